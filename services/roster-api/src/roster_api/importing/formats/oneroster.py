"""OneRoster 1.1 and 1.2 CSV (a zip with manifest.csv) -> records by sourcedId -> the roster.

Read by column name (real exports get case and order wrong: warnings). Bulk files are snapshots:
`tobedeleted`/`inactive` rows in one are warned about and left out. Delta files are patches: they are
merged into the district's current roster by `formats.delta`, never read as a snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import compress, islice, repeat
from typing import NamedTuple

from roster_api.importing.csv_format import Code
from roster_api.importing.formats.build import Builder, Where, grade_of
from roster_api.importing.formats.table import Report, Spec, Table, read_table
from roster_api.importing.normalize import SIS_KEY_PREFIX, STUDENT, TEACHER, ClassIn, SchoolIn

PairSink = Callable[[list[tuple[str, str]]], None]
MANIFEST = "manifest.csv"
VERSIONS = ("1.1", "1.2")
BULK, DELTA, ABSENT = "bulk", "delta", "absent"
ACTIVE, TO_BE_DELETED = "active", "tobedeleted"


def _extension(name: str) -> bool:
    return name.lower().startswith("metadata.")


_COMMON = ("sourcedId", "status", "dateLastModified")
ORGS = Spec(
    "orgs.csv",
    (*_COMMON, "name", "type", "identifier", "parentSourcedId"),
    ("sourcedId", "name", "type"),
    case_sensitive=True,
    ordered=True,
    extra_ok=_extension,
)
CLASSES = Spec(
    "classes.csv",
    (
        *_COMMON,
        "title",
        "grades",
        "courseSourcedId",
        "classCode",
        "classType",
        "location",
        "schoolSourcedId",
        "termSourcedIds",
        "subjects",
        "subjectCodes",
        "periods",
    ),
    ("sourcedId", "title", "schoolSourcedId"),
    case_sensitive=True,
    ordered=True,
    extra_ok=_extension,
)
_USER_CONTACT = ("middleName", "identifier", "email", "sms", "phone", "agentSourcedIds", "grades", "password")
USERS_11 = Spec(
    "users.csv",
    (
        *_COMMON,
        "enabledUser",
        "orgSourcedIds",
        "role",
        "username",
        "userIds",
        "givenName",
        "familyName",
        *_USER_CONTACT,
    ),
    ("sourcedId", "role", "givenName", "familyName"),
    case_sensitive=True,
    ordered=True,
    extra_ok=_extension,
)
USERS_12 = Spec(
    "users.csv",
    (
        *_COMMON,
        "enabledUser",
        "username",
        "userIds",
        "givenName",
        "familyName",
        *_USER_CONTACT,
        "userMasterIdentifier",
        "resourceSourcedIds",
        "preferredGivenName",
        "preferredMiddleName",
        "preferredFamilyName",
        "primaryOrgSourcedId",
        "pronouns",
    ),
    ("sourcedId", "givenName", "familyName"),
    case_sensitive=True,
    ordered=True,
    extra_ok=_extension,
)
ROLES = Spec(
    "roles.csv",
    (
        *_COMMON,
        "userSourcedId",
        "roleType",
        "role",
        "beginDate",
        "endDate",
        "orgSourcedId",
        "userProfileSourcedId",
    ),
    ("userSourcedId", "role"),
    case_sensitive=True,
    ordered=True,
    extra_ok=_extension,
)
ENROLLMENTS = Spec(
    "enrollments.csv",
    (
        *_COMMON,
        "classSourcedId",
        "schoolSourcedId",
        "userSourcedId",
        "role",
        "primary",
        "beginDate",
        "endDate",
    ),
    ("sourcedId", "classSourcedId", "userSourcedId", "role"),
    case_sensitive=True,
    ordered=True,
    extra_ok=_extension,
)
# what we read; every other file of the package (gradebook, resources, demographics) is ignored unread
ROSTER_FILES = ("orgs.csv", "users.csv", "classes.csv", "enrollments.csv")
# users' roles that become people here; the others (administrator, aide, guardian...) are skipped
PERSON_ROLES = {"student": STUDENT, "teacher": TEACHER}


@dataclass
class Record:
    where: Where
    status: str  # "" (bulk), "active" or "tobedeleted"


@dataclass
class Org(Record):
    name: str = ""
    type: str = ""
    parent: str = ""


@dataclass
class Klass(Record):
    title: str = ""
    school: str = ""


@dataclass
class User(Record):
    first: str = ""
    last: str = ""
    email: str = ""
    grades: str = ""
    roles: set[str] = field(default_factory=set)  # the OneRoster roles (1.2: from roles.csv)


class Enrollment(NamedTuple):
    """A tuple, not a Record: a district has a million of them."""

    file: str
    line: int
    status: str
    klass: str
    user: str
    role: str

    @property
    def where(self) -> Where:
        return Where(self.file, self.line)


class Columns(NamedTuple):
    """A chunk of a bulk enrollments.csv read column by column (`_Chunks`): its records without a
    tuple each (a district has a million). Every status is empty; lines follow each other."""

    file: str
    line: int  # of the first
    after: int  # how many of Package.enrollments come before it in the file
    sids: list[str]
    klasses: list[str]
    users: list[str]
    roles: list[str]

    def records(self) -> Iterator[tuple[int, str, str, str]]:
        """(line, class, user, role) per record."""
        lines = range(self.line, self.line + len(self.sids))
        return zip(lines, self.klasses, self.users, self.roles, strict=True)

    def record(self, line: int, klass: str, user: str, role: str) -> Enrollment:
        return Enrollment(self.file, line, "", klass, user, role)


@dataclass
class Package:
    """The roster records of one OneRoster zip, by sourcedId."""

    version: str
    modes: dict[str, str]  # file -> bulk | delta | absent
    orgs: dict[str, Org] = field(default_factory=dict)
    classes: dict[str, Klass] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    enrollments: dict[str, Enrollment] = field(default_factory=dict)
    # a bulk package's enrollments read a chunk at a time, besides `enrollments` (in file order with
    # them: see `ordered_enrollments`), and their sourcedIds
    columns: list[Columns] = field(default_factory=list)
    column_ids: set[str] = field(default_factory=set)
    rows: int = 0
    dropped: set[str] = field(default_factory=set)  # sourcedIds of rows left out for their status
    # a file of the package cannot be read (file-level errors): its records were not read. Errors on
    # records leave it False: their rows are left out, the others read (the `skip` row policy)
    refused: bool = False

    def ordered_enrollments(self) -> Iterator[Enrollment | Columns]:
        """The enrollments in file order: records and chunks of records."""
        records = iter(self.enrollments.values())
        done = 0
        for chunk in self.columns:
            yield from islice(records, chunk.after - done)
            done = chunk.after
            yield chunk
        yield from records

    def first_line(self, sid: str) -> int:
        """The line of the enrollment with this sourcedId."""
        if sid in self.enrollments:
            return self.enrollments[sid].line
        chunk = next(c for c in self.columns if sid in c.sids)
        return chunk.line + chunk.sids.index(sid)

    @property
    def delta(self) -> bool:
        """A patch: some file is a delta, or no roster file is there at all (a manifest alone means
        "no changes", never "everyone left")."""
        modes = [self.modes.get(name, ABSENT) for name in ROSTER_FILES]
        return DELTA in modes or all(mode == ABSENT for mode in modes)


def read_manifest(files: dict[str, bytes], report: Report) -> tuple[str, dict[str, str]] | None:
    """(oneroster version, file modes) or None when the manifest is unusable."""
    spec = Spec(MANIFEST, ("propertyName", "value"), ("propertyName", "value"))
    table = read_table(MANIFEST, files[MANIFEST], spec, report)
    if table is None:
        return None
    get = table.getter("propertyName", "value")
    props: dict[str, tuple[str, int]] = {}
    for line, fields in table.rows():
        name, value = (v.strip() for v in get(fields))
        props[name] = (value, line)
    version, line = props.get("oneroster.version", ("", 1))
    if version not in VERSIONS:
        report.error(
            MANIFEST,
            line,
            "value",
            Code.UNSUPPORTED_FORMAT,
            f"oneroster.version is {version!r}; OneRoster 1.1 and 1.2 are accepted.",
            "Export OneRoster 1.1 or 1.2 CSV.",
        )
        return None
    modes: dict[str, str] = {}
    for name, (value, line) in props.items():
        if not name.startswith("file."):
            continue
        mode = value.lower()
        if mode not in (BULK, DELTA, ABSENT):
            report.warn(MANIFEST, line, "value", Code.INVALID_VALUE, f"{name} is {value!r}; read as absent.")
            mode = ABSENT
        modes[name[5:] + ".csv"] = mode
    by_lower = {n.lower(): n for n in files}
    for name in ROSTER_FILES:
        mode = modes.get(name, ABSENT)  # a missing file.X row means absent
        present = name.lower() in by_lower
        if mode != ABSENT and not present:
            report.error(
                None,
                None,
                None,
                Code.MISSING_FILE,
                f"The manifest lists {name} as {mode} but the zip has no {name}.",
                "Export the zip again with every file the manifest names.",
            )
        elif mode == ABSENT and present:
            report.warn(
                MANIFEST,
                None,
                None,
                Code.MANIFEST_MISMATCH,
                f"The zip has {name} but the manifest says it is absent; read as bulk.",
            )
            modes[name] = BULK
    return version, modes


def _status(table: Table, line: int, raw: str, mode: str, report: Report) -> str | None:
    """The record's status; None: leave the row out."""
    status = raw.strip().lower()
    if status == "inactive":
        status = TO_BE_DELETED
    if mode == BULK:
        if status:
            report.warn(
                table.file,
                line,
                "status",
                Code.STATUS_IN_BULK,
                f"A bulk file has status {raw.strip()!r}"
                + ("; the record is left out." if status == TO_BE_DELETED else "; ignored."),
                "In a bulk file status and dateLastModified are empty.",
            )
        return None if status == TO_BE_DELETED else ""
    if status not in (ACTIVE, TO_BE_DELETED):
        report.error(
            table.file,
            line,
            "status",
            Code.INVALID_VALUE,
            f"A delta record needs status active or tobedeleted, not {raw.strip()!r}.",
        )
        return None
    return status


def _records(
    table: Table, mode: str, report: Report, dropped: set[str], *columns: str
) -> Iterator[tuple[Where, str, str, tuple[str, ...]]]:
    """(where, sourcedId, status, cells) per usable row, duplicate ids reported; the ids of rows left
    out for their status go to `dropped` (what refers to them is left out without an error)."""
    get = table.getter("sourcedId", "status", *columns)
    seen: dict[str, int] = {}
    count = 0
    for line, fields in table.rows():
        count += 1
        sourced_id, raw_status, *cells = map(str.strip, get(fields))
        if not sourced_id:
            report.error(table.file, line, "sourcedId", Code.MISSING_VALUE, "The sourcedId is empty.")
            continue
        first = seen.setdefault(sourced_id, line)
        if first != line:
            report.error(
                table.file,
                line,
                "sourcedId",
                Code.DUPLICATE_ID,
                f"sourcedId {sourced_id!r} is also on line {first}.",
                "Each record once per file.",
            )
            continue
        status = _status(table, line, raw_status, mode, report)
        if status is None:
            dropped.add(sourced_id)
            continue
        yield Where(table.file, line), sourced_id, status, tuple(cells)
    if count == 0:
        report.error(
            table.file,
            None,
            None,
            Code.NO_ROWS,
            "The file has a header but no rows.",
            "A OneRoster file with no records must be left out of the zip (and the manifest say absent).",
        )


def _find(files: dict[str, bytes], name: str) -> tuple[str, bytes] | None:
    for real, data in files.items():
        if real.lower() == name.lower():
            return real, data
    return None


def read_package(
    files: dict[str, bytes],
    version: str,
    modes: dict[str, str],
    report: Report,
    on_enrollments: PairSink | None = None,
) -> Package:
    """`on_enrollments`: a bulk package's student enrollments are handed to it while enrollments.csv
    is read (a district's first import writes them meanwhile, as the v1 reader's are), exactly the
    pairs the roster will have if the package has no error (see `_early_pairs`)."""
    package = Package(version, modes)
    tables: dict[str, Table] = {}
    users_spec = USERS_11 if version == "1.1" else USERS_12
    specs = [ORGS, users_spec, CLASSES, ENROLLMENTS] + ([ROLES] if version == "1.2" else [])
    for spec in specs:
        if modes.get(spec.file, BULK if spec is ROLES else ABSENT) == ABSENT:
            continue
        found = _find(files, spec.file)
        if found is None:
            if spec is ROLES and modes.get("users.csv") == BULK:
                report.error(None, None, None, Code.MISSING_FILE, "A OneRoster 1.2 zip needs roles.csv.")
            continue
        real, data = found
        if real != spec.file:
            report.warn(real, None, None, Code.HEADER_ORDER, f"The file should be named {spec.file}.")
        table = read_table(spec.file, data, spec, report)
        if table is not None:
            tables[spec.file] = table
    if report.errors:
        package.refused = True
        return package
    mode = modes.get
    if "orgs.csv" in tables:
        for where, sid, status, (name, kind, parent) in _records(
            tables["orgs.csv"],
            mode("orgs.csv", BULK),
            report,
            package.dropped,
            "name",
            "type",
            "parentSourcedId",
        ):
            package.orgs[sid] = Org(where, status, name, kind.lower(), parent)
    if "classes.csv" in tables:
        for where, sid, status, (title, school) in _records(
            tables["classes.csv"],
            mode("classes.csv", BULK),
            report,
            package.dropped,
            "title",
            "schoolSourcedId",
        ):
            package.classes[sid] = Klass(where, status, title, school)
    if "users.csv" in tables:
        _read_users(tables["users.csv"], mode("users.csv", BULK), version, package, report)
    if "roles.csv" in tables:
        _read_roles(tables["roles.csv"], mode("roles.csv", BULK), package, report)
    if "enrollments.csv" in tables:
        sink = on_enrollments if not package.delta else None
        _read_enrollments(tables["enrollments.csv"], mode("enrollments.csv", BULK), package, report, sink)
    package.rows = sum(len(r) for r in (package.orgs, package.classes, package.users, package.enrollments))
    package.rows += len(package.column_ids)
    return package


def _read_enrollments(
    table: Table, mode: str, package: Package, report: Report, sink: PairSink | None = None
) -> None:
    """As `_records` does, in one loop: a district's enrollments are most of its rows. A bulk file
    without quotes goes a chunk of lines at a time (`_Chunks`), row by row only where a chunk has
    anything unusual."""
    get = table.getter("sourcedId", "status", "classSourcedId", "userSourcedId", "role")
    enrollments = package.enrollments
    file = table.file
    new = tuple.__new__  # an Enrollment without NamedTuple's own __new__ (a Python call per row)
    # a class is on ~25 rows and a user on ~6: one string each instead of one per row (a third of
    # the memory a million enrollments take)
    same: dict[str, str] = {}
    once = same.setdefault
    early = _EarlyPairs(package, sink) if sink is not None and mode == BULK else None
    count = 0
    rows = table.rows()
    chunked = None
    if table.plain and mode == BULK and not package.delta:
        chunked = _Chunks(table, package, once, early)
        rows = chunked.rows()
    taken = package.column_ids
    for line, fields in rows:
        count += 1
        sid, raw_status, klass, user, role = get(fields)
        sid = sid.strip()
        if not sid or sid in enrollments or sid in taken:
            _records_problem(table, line, sid, package.first_line(sid) if sid else 0, report)
            continue
        status = ""
        if raw_status or mode != BULK:
            found = _status(table, line, raw_status, mode, report)
            if found is None:
                package.dropped.add(sid)
                continue
            status = found
        klass, user, role = klass.strip(), user.strip(), role.strip().lower()
        klass, user = once(klass, klass), once(user, user)
        enrollments[sid] = new(Enrollment, (file, line, status, klass, user, once(role, role)))
        if early is not None and role == "student":
            early.add(klass, user)
    if chunked is not None:
        count += chunked.count
    if early is not None:
        early.flush()
    if count == 0:
        _no_rows(table, report)


class _Chunks:
    """A quote-free bulk enrollments.csv, a chunk of lines at a time: a chunk whose lines all have
    the header's count of values, an empty status, an id and no id seen before (what an export
    writes) becomes its records column by column, without a Python step per row; any other chunk
    goes row by row through the caller's loop (`rows`), which reports what is wrong."""

    def __init__(
        self, table: Table, package: Package, once: Callable[[str, str], str], early: _EarlyPairs | None
    ) -> None:
        self.table, self.package, self.once, self.early = table, package, once, early
        self.count = 0  # rows taken here (the caller counts the others)
        names = ("sourcedid", "status", "classsourcedid", "usersourcedid", "role")
        at = [table.columns.get(name) for name in names]
        self.at = None if None in at else at

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        table = self.table
        for line, lines in table.chunks():
            if self.at is None or not self._take(line, lines):
                yield from table.plain_rows(line, lines)

    def _take(self, line: int, lines: list[str]) -> bool:
        assert self.at is not None
        width, count = self.table.width, len(lines)
        if set(map(str.count, lines, repeat(","))) != {width - 1}:
            return False  # blank or ragged lines
        cells = ",".join(lines).split(",")
        sid_at, status_at, class_at, user_at, role_at = self.at
        if any(cells[status_at::width]):
            return False  # a status in a bulk file: warned row by row
        sids = list(map(str.strip, cells[sid_at::width]))
        package = self.package
        ids = set(sids)
        if (
            not all(sids)
            or len(ids) != count
            or not package.enrollments.keys().isdisjoint(ids)
            or not package.column_ids.isdisjoint(ids)
        ):
            return False  # an empty or repeated id
        klasses = self._column(cells[class_at::width])
        users = self._column(cells[user_at::width])
        roles = self._column(list(map(str.lower, cells[role_at::width])))
        del cells
        package.column_ids |= ids
        after = len(package.enrollments)
        package.columns.append(Columns(self.table.file, line, after, sids, klasses, users, roles))
        if self.early is not None:
            self.early.add_all(klasses, users, roles)
        self.count += count
        return True

    def _column(self, cells: list[str]) -> list[str]:
        """Stripped, one string per distinct value."""
        stripped = list(map(str.strip, cells))
        return list(map(self.once, stripped, stripped))


class _EarlyPairs:
    """The student enrollments of a bulk package, handed on in batches while they are read: each
    (class, student key) the roster will have if the package has no error, once. A pair goes when
    its user is a student (and not a teacher) of users.csv and its class is in classes.csv at a
    school that was not left out; every other enrollment either is not a student's link or makes
    an error, and a package with errors is not applied (what was handed on is rolled back)."""

    def __init__(self, package: Package, sink: PairSink) -> None:
        self.sink = sink
        self.sent: dict[tuple[str, str], None] = {}
        self.batch: list[tuple[str, str]] = []
        self.classes = {sid for sid, klass in package.classes.items() if klass.school not in package.dropped}
        self.students = {
            sid: SIS_KEY_PREFIX + sid
            for sid, user in package.users.items()
            if {PERSON_ROLES[r] for r in user.roles if r in PERSON_ROLES} == {STUDENT}
        }

    def add(self, klass: str, user: str) -> None:
        key = self.students.get(user)
        if key is None or klass not in self.classes:
            return
        pair = (klass, key)
        if pair in self.sent:
            return
        self.sent[pair] = None
        self.batch.append(pair)
        if len(self.batch) >= EARLY_BATCH:
            self.flush()

    def add_all(self, klasses: list[str], users: list[str], roles: list[str]) -> None:
        """`add` for each row of a chunk, in order."""
        get, classes, sent = self.students.get, self.classes, self.sent
        keys: Iterator[str] = map(get, users)  # type: ignore[arg-type]  # (None: not a student)
        pairs = compress(zip(klasses, keys, strict=True), map("student".__eq__, roles))
        found = dict.fromkeys(p for p in pairs if p[1] is not None and p[0] in classes)
        fresh = [pair for pair in found if pair not in sent]
        sent.update(dict.fromkeys(fresh))
        self.batch.extend(fresh)
        if len(self.batch) >= EARLY_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.sink(self.batch)
            self.batch = []


EARLY_BATCH = 20_000


def _records_problem(table: Table, line: int, sourced_id: str, first: int, report: Report) -> None:
    if not sourced_id:
        report.error(table.file, line, "sourcedId", Code.MISSING_VALUE, "The sourcedId is empty.")
    else:
        report.error(
            table.file,
            line,
            "sourcedId",
            Code.DUPLICATE_ID,
            f"sourcedId {sourced_id!r} is also on line {first}.",
            "Each record once per file.",
        )


def _no_rows(table: Table, report: Report) -> None:
    report.error(
        table.file,
        None,
        None,
        Code.NO_ROWS,
        "The file has a header but no rows.",
        "A OneRoster file with no records must be left out of the zip (and the manifest say absent).",
    )


def _read_users(table: Table, mode: str, version: str, package: Package, report: Report) -> None:
    columns = ("givenName", "familyName", "email", "username", "grades", "role")
    for where, sid, status, (first, last, email, username, grades, role) in _records(
        table, mode, report, package.dropped, *columns
    ):
        if not email and "@" in username:
            email = username  # the login name is often the email
        user = User(where, status, first, last, email, grades)
        if version == "1.1" and role:
            user.roles.add(role.lower())
        package.users[sid] = user


def _read_roles(table: Table, mode: str, package: Package, report: Report) -> None:
    get = table.getter("userSourcedId", "role", "status")
    count = 0
    for line, fields in table.rows():
        count += 1
        user_id, role, raw_status = (v.strip() for v in get(fields))
        if _status(table, line, raw_status, mode, report) in (None, TO_BE_DELETED):
            continue
        user = package.users.get(user_id)
        if user is None:
            report.error(
                table.file,
                line,
                "userSourcedId",
                Code.UNKNOWN_REFERENCE,
                f"User {user_id!r} is not in users.csv.",
            )
            continue
        user.roles.add(role.lower())
    if count == 0:
        report.error(table.file, None, None, Code.NO_ROWS, "The file has a header but no rows.")


def _role_of(user_id: str, user: User, report: Report) -> str | None:
    """student or teacher; None for the roles we do not roster (or a contradiction, reported)."""
    ours = {PERSON_ROLES[r] for r in user.roles if r in PERSON_ROLES}
    if len(ours) > 1:
        report.error(
            user.where.file,
            user.where.line,
            "role",
            Code.ROLE_CONFLICT,
            f"User {user_id!r} is both a student and a teacher.",
            "One person has one role here; give them one.",
        )
        return None
    return next(iter(ours), None)


def build(package: Package, builder: Builder) -> None:
    """A bulk package (or a delta merged into a snapshot) -> the builder."""
    report = builder.report
    builder.files = {TEACHER: "users.csv", STUDENT: "users.csv"}
    builder.rows = package.rows
    for sid, org in package.orgs.items():
        if org.type == "school":
            builder.schools[sid] = SchoolIn(org.name.strip() or sid, org.where.line)
    for sid, klass in package.classes.items():
        school = _school_of(klass, package, report)
        if school is None:
            continue
        if not klass.title:
            report.error(
                klass.where.file, klass.where.line, "title", Code.MISSING_VALUE, "The class title is empty."
            )
            continue
        builder.classes[sid] = ClassIn(klass.title, school, klass.where.line)
    roles: dict[str, str | None] = {}
    for sid, user in package.users.items():
        role = roles[sid] = _role_of(sid, user, report)
        if role is None:
            continue
        grade = None
        if role == STUDENT and user.grades:
            grade = _grade(user, report)
        person = builder.person(
            user.where,
            role,
            sid,
            user.first,
            user.last,
            user.email,
            grade,
            ("givenName", "familyName", "email"),
        )
        if person is not None:
            builder.add_person(person)
    # the usual enrollment (a known class, a person of the enrolled role) in a few lookups; anything
    # else goes through _enroll, which finds and reports what is wrong
    links = {TEACHER: builder.class_teachers, STUDENT: builder.enrollments}
    person_of = {  # sourcedId -> (the enrolled role it takes, its roster key, where its links go)
        person.sis_id: (role, key, links[role])
        for role, people in builder.people.items()
        for key, person in people.items()
        if person.sis_id is not None
    }
    classes = builder.classes
    role_of = PERSON_ROLES.get
    for enrollment in package.ordered_enrollments():
        if isinstance(enrollment, Columns):
            chunk = enrollment
            for line, class_id, user_id, role in chunk.records():
                found = person_of.get(user_id)
                if found is not None and found[0] == role_of(role) and class_id in classes:
                    found[2][(class_id, found[1])] = None
                else:
                    _enroll(chunk.record(line, class_id, user_id, role), package, builder, roles)
            continue
        found = person_of.get(enrollment.user)
        if found is not None and found[0] == role_of(enrollment.role) and enrollment.klass in classes:
            found[2][(enrollment.klass, found[1])] = None
            continue
        _enroll(enrollment, package, builder, roles)


def _grade(user: User, report: Report) -> str | None:
    grades = [g.strip() for g in user.grades.split(",") if g.strip()]
    if len(grades) > 1:
        report.warn(
            user.where.file,
            user.where.line,
            "grades",
            Code.INVALID_GRADE,
            f"Several grades; {grades[0]!r} is used.",
        )
    grade = grade_of(grades[0], ceds=True) if grades else None
    if grades and grade is None:
        report.warn(
            user.where.file,
            user.where.line,
            "grades",
            Code.INVALID_GRADE,
            f"{grades[0]!r} is not a grade code; the grade is left empty.",
            "Use the CEDS codes: IT PR PK TK KG 01-13 PS UG Other.",
        )
    return grade


def _school_of(klass: Klass, package: Package, report: Report) -> str | None:
    where = klass.where
    org = package.orgs.get(klass.school)
    if org is None and klass.school in package.dropped:
        return None  # its school is left out for its status (warned)
    if org is None:
        report.error(
            where.file,
            where.line,
            "schoolSourcedId",
            Code.UNKNOWN_REFERENCE,
            f"School {klass.school!r} is not in orgs.csv.",
            "Every class needs the sourcedId of a school in orgs.csv.",
        )
        return None
    if org.type == "school":
        return klass.school
    parent = package.orgs.get(org.parent)
    if org.type == "department" and parent is not None and parent.type == "school":
        report.warn(
            where.file,
            where.line,
            "schoolSourcedId",
            Code.INVALID_VALUE,
            f"The class is at department {klass.school!r}; it is put in that department's school "
            f"{org.parent!r}.",
        )
        return org.parent
    report.error(
        where.file,
        where.line,
        "schoolSourcedId",
        Code.INVALID_VALUE,
        f"The class is at org {klass.school!r} of type {org.type!r}, not at a school.",
        "Classes belong to a school (an org of type school).",
    )
    return None


def _enroll(enrollment: Enrollment, package: Package, builder: Builder, roles: dict[str, str | None]) -> None:
    report = builder.report
    where = enrollment.where
    if enrollment.role not in PERSON_ROLES:
        return  # administrator, proctor, aide: not rostered here
    if enrollment.klass in package.dropped or enrollment.user in package.dropped:
        return  # left out for its status (warned)
    if enrollment.klass not in package.classes:
        report.error(
            where.file,
            where.line,
            "classSourcedId",
            Code.UNKNOWN_REFERENCE,
            f"Class {enrollment.klass!r} is not in classes.csv.",
        )
        return
    if enrollment.user not in package.users:
        report.error(
            where.file,
            where.line,
            "userSourcedId",
            Code.UNKNOWN_REFERENCE,
            f"User {enrollment.user!r} is not in users.csv.",
        )
        return
    role = PERSON_ROLES[enrollment.role]
    user_role = roles.get(enrollment.user)
    if user_role is None:
        if not any(r in PERSON_ROLES for r in package.users[enrollment.user].roles):
            report.warn(
                where.file,
                where.line,
                "role",
                Code.SKIPPED_RECORD,
                f"User {enrollment.user!r} is enrolled as {enrollment.role} but is not a student or "
                "teacher in users.csv; skipped.",
            )
        return
    if user_role != role:
        report.error(
            where.file,
            where.line,
            "role",
            Code.ROLE_CONFLICT,
            f"User {enrollment.user!r} is a {user_role} in users.csv but enrolled as {enrollment.role}.",
            "Fix the role in one of the two files.",
        )
        return
    if enrollment.klass not in builder.classes:
        return  # the class has an error of its own
    key = SIS_KEY_PREFIX + enrollment.user
    if key not in builder.people[role]:
        return  # the person has an error of their own
    (builder.class_teachers if role == TEACHER else builder.enrollments)[(enrollment.klass, key)] = None
