// District console: confirmation of decisions and polling of a running import. No inline scripts (CSP).
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

(function poll() {
  var progress = document.getElementById("progress");
  if (!progress) return;
  var url = progress.getAttribute("data-poll");
  var delay = 500;
  function check() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data && data.final) {
          // the upload's "Importing the file." is not news once the import has ended
          var here = new URL(window.location.href);
          here.searchParams.delete("notice");
          here.searchParams.delete("n");
          window.location.replace(here.toString());
          return;
        }
        if (data) progress.textContent = "This import is " + data.status + " (" + data.percent + "%). The page refreshes when it is done.";
        delay = Math.min(delay * 1.5, 3000);
        window.setTimeout(check, delay);
      })
      .catch(function () { window.setTimeout(check, 5000); });
  }
  window.setTimeout(check, delay);
})();
