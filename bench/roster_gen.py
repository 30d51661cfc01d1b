"""A seeded synthetic district roster in CSV format v1, for benchmarks, the demo and tests.

    python -m bench.roster_gen out.csv --students 170000 --seed 1 [--churn 0.01] [--email-only]

The same seed always gives the same bytes. At 170,000 students: about 240 schools, 8,500 teachers,
42,000 classes and 6 classes per student, i.e. about 1,020,000 rows and 200 MB. `churn` (a fraction
of the students) removes a third of that many students, changes the name or grade of a third and adds a
third, leaving everyone else exactly as in the file without churn."""

from __future__ import annotations

import argparse
import csv
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from roster_api.importing.csv_format import COLUMNS

# the format's own column list, so the generator never drifts from what the importer reads
HEADER = list(COLUMNS)
FIRST = [
    "Ava",
    "Liam",
    "Olivia",
    "Noah",
    "Emma",
    "Oliver",
    "Sophia",
    "Elijah",
    "Isabella",
    "James",
    "Mia",
    "William",
    "Amelia",
    "Benjamin",
    "Harper",
    "Lucas",
    "Evelyn",
    "Henry",
    "Abigail",
    "Alexander",
    "Emily",
    "Michael",
    "Elizabeth",
    "Daniel",
    "Sofia",
    "Mateo",
    "Camila",
    "Jackson",
    "Avery",
    "Sebastian",
    "Aria",
    "Jack",
    "Scarlett",
    "Aiden",
    "Chloe",
    "Owen",
    "Zoey",
    "Samuel",
    "Penelope",
    "Luke",
    "Layla",
    "Dylan",
    "Nora",
    "Ethan",
    "Lily",
    "Jayden",
    "Ellie",
    "José",
    "Zoë",
    "Renée",
    "Siobhán",
    "Nguyễn",
    "Chidi",
    "Aaliyah",
    "Mohammed",
    "Priya",
    "Wei",
    "Yuki",
]
LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "O'Brien",
    "Müller",
    "Núñez",
    "Kowalski",
    "Okafor",
    "Patel",
    "Chen",
    "Tanaka",
    "D'Angelo",
]
SUFFIXES = ["", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", " Jr."]
SUBJECTS = ["Math", "Reading", "Science", "Social Studies", "Art", "Music", "PE", "Writing", "Spanish"]
SCHOOL_KINDS = [("Elementary School", ["K", "1", "2", "3", "4", "5"]), ("Middle School", ["6", "7", "8"])]
HIGH = ("High School", ["9", "10", "11", "12"])
STUDENTS_PER_SCHOOL = 708
STUDENTS_PER_TEACHER = 20
CLASSES_PER_STUDENT = 6
CLASS_SIZE = 24.3


@dataclass
class Student:
    first: str
    last: str
    clever_id: str
    email: str
    grade: str
    classes: list[int]


def _hex24(rng: random.Random) -> str:
    return f"{rng.getrandbits(96):024x}"


def generate(
    path: Path | str,
    *,
    students: int = 170_000,
    seed: int = 1,
    churn: float = 0.0,
    email_only: bool = False,
    domain: str = "springfield.example.org",
) -> dict[str, int]:
    """Writes the roster to `path` and returns its counts (rows, schools, teachers, classes, students)."""
    rng = random.Random(seed)
    n_schools = max(1, round(students / STUDENTS_PER_SCHOOL))
    per_school = [students // n_schools + (1 if i < students % n_schools else 0) for i in range(n_schools)]
    rows = 0
    counts = {"schools": n_schools, "teachers": 0, "classes": 0, "students": 0}
    churn_rng = random.Random(seed * 7919 + 17)
    serial = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADER)
        for s, n_students in enumerate(per_school):
            kind, grades = SCHOOL_KINDS[s % 2] if s % 5 else HIGH
            school_id = f"sch-{s + 1:04d}"
            school_name = f"{rng.choice(LAST)} {kind} #{s + 1}"
            n_teachers = max(1, round(n_students / STUDENTS_PER_TEACHER))
            teachers = []
            for t in range(n_teachers):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                email = f"{first}.{last}.{s + 1}.{t + 1}@{domain}".lower().replace("'", "")
                teachers.append((email, first, last, "" if email_only else _hex24(rng)))
            n_classes = max(CLASSES_PER_STUDENT, round(n_students * CLASSES_PER_STUDENT / CLASS_SIZE))
            classes = []
            for c in range(n_classes):
                grade = grades[c % len(grades)]
                teacher = teachers[c % n_teachers]
                subject = SUBJECTS[c % len(SUBJECTS)]
                classes.append(
                    (f"cls-{s + 1:04d}-{c + 1:04d}", f"Grade {grade} {subject} - Period {c % 8 + 1}")
                )
                _ = teacher
            counts["teachers"] += n_teachers
            counts["classes"] += n_classes
            roster: list[Student] = []
            for _n in range(n_students):
                serial += 1
                first, last = rng.choice(FIRST), rng.choice(LAST) + rng.choice(SUFFIXES)
                clever_id = _hex24(rng)
                email = f"s{serial:07d}@{domain}"
                grade = rng.choice(grades)
                picks = rng.sample(range(n_classes), min(CLASSES_PER_STUDENT, n_classes))
                roster.append(Student(first, last, "" if email_only else clever_id, email, grade, picks))
            if churn > 0:
                roster = _churn(roster, churn, churn_rng, domain, grades, n_classes, email_only)
            counts["students"] += len(roster)
            for st in roster:
                for c in st.classes:
                    class_id, class_name = classes[c]
                    t_email, t_first, t_last, t_cid = teachers[c % n_teachers]
                    writer.writerow(
                        [
                            school_id,
                            school_name,
                            t_email,
                            t_first,
                            t_last,
                            t_cid,
                            class_id,
                            class_name,
                            st.first,
                            st.last,
                            st.clever_id,
                            st.email,
                            st.grade,
                        ]
                    )
                    rows += 1
    counts["rows"] = rows
    return counts


def _churn(
    roster: list[Student],
    churn: float,
    rng: random.Random,
    domain: str,
    grades: list[str],
    n_classes: int,
    email_only: bool,
) -> list[Student]:
    """A third removed, a third changed, a third added; deterministic for the seed."""
    each = len(roster) * churn / 3
    # round stochastically so small schools still churn on average
    k = int(each) + (1 if rng.random() < each - int(each) else 0)
    if k == 0 or len(roster) < 3 * k:
        return roster
    chosen = rng.sample(range(len(roster)), 2 * k)
    removed, changed = set(chosen[:k]), chosen[k:]
    for i in changed:
        st = roster[i]
        if rng.random() < 0.5:
            st.last = st.last + "-" + rng.choice(LAST)
        else:
            st.grade = rng.choice([g for g in grades if g != st.grade] or grades)
    kept = [st for i, st in enumerate(roster) if i not in removed]
    for _ in range(k):
        serial = rng.getrandbits(40)
        kept.append(
            Student(
                rng.choice(FIRST),
                rng.choice(LAST),
                "" if email_only else _hex24(rng),
                f"n{serial:012d}@{domain}",
                rng.choice(grades),
                rng.sample(range(n_classes), min(CLASSES_PER_STUDENT, n_classes)),
            )
        )
    return kept


_CEDS = {
    "InfantToddler": "IT",
    "Preschool": "PR",
    "PreKindergarten": "PK",
    "TransitionalKindergarten": "TK",
    "Kindergarten": "KG",
    "PostGraduate": "PS",
    "Ungraded": "UG",
    "Other": "Other",
}


def oneroster_zip(csv_path: Path | str, zip_path: Path | str) -> None:
    """The district of a v1 file (as an import reads it) as a OneRoster 1.1 bulk zip: sourcedIds are
    the v1 ids (a person's Clever ID, else email), grades CEDS codes, one teacher enrollment per class
    teacher and one student enrollment per (class, student)."""
    import zipfile

    from roster_api.importing.normalize import normalize
    from roster_api.importing.parse import parse

    with open(csv_path, "rb") as source:
        roster = normalize(parse(source))

    def table(header: str, rows: list[str]) -> bytes:
        return (header + "\r\n" + "".join(rows)).encode()

    manifest = "\r\n".join(
        ["propertyName,value", "manifest.version,1.0", "oneroster.version,1.1"]
        + [
            f"file.{n},bulk"
            for n in ("academicSessions", "classes", "courses", "enrollments", "orgs", "users")
        ]
        + [f"file.{n},absent" for n in ("categories", "classResources", "courseResources", "demographics")]
        + [f"file.{n},absent" for n in ("lineItems", "resources", "results")]
    )
    orgs = ["bench-district,,,Bench USD,district,,\r\n"]
    orgs += [f"{sid},,,{school.name},school,,bench-district\r\n" for sid, school in roster.schools.items()]
    classes = [
        f"{cid},,,{k.name},,course-1,,scheduled,,{k.school_id},term-1,,,\r\n"
        for cid, k in roster.classes.items()
    ]
    users = []
    for role, people in (("teacher", roster.teachers), ("student", roster.students)):
        for key, p in people.items():
            digits = p.grade if p.grade and p.grade.isdigit() else None
            grade = _CEDS.get(p.grade or "", f"{int(digits):02d}" if digits else "")
            users.append(
                f"{key},,,true,,{role},{p.email or key},,{p.first_name},{p.last_name},,,{p.email or ''},,,,"
                f"{grade},\r\n"
            )
    enrollments = []
    n = 0
    for class_id, key in sorted(roster.class_teachers):
        n += 1
        school = roster.classes[class_id].school_id
        enrollments.append(f"e{n},,,{class_id},{school},{key},teacher,false,,\r\n")
    for class_id, key in roster.enrollments:
        n += 1
        school = roster.classes[class_id].school_id
        enrollments.append(f"e{n},,,{class_id},{school},{key},student,,,\r\n")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.csv", manifest + "\r\n")
        archive.writestr(
            "orgs.csv", table("sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId", orgs)
        )
        archive.writestr(
            "academicSessions.csv",
            "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\r\n"
            "term-1,,,2026-2027,schoolYear,2026-08-15,2027-06-15,,2027\r\n",
        )
        archive.writestr(
            "courses.csv",
            "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,"
            "subjectCodes\r\ncourse-1,,,term-1,All,,,bench-district,,\r\n",
        )
        archive.writestr(
            "classes.csv",
            table(
                "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,"
                "schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
                classes,
            ),
        )
        archive.writestr(
            "users.csv",
            table(
                "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
                "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password",
                users,
            ),
        )
        archive.writestr(
            "enrollments.csv",
            table(
                "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,"
                "beginDate,endDate",
                enrollments,
            ),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.roster_gen", description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--students", type=int, default=170_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--churn", type=float, default=0.0, help="fraction of students changed, e.g. 0.01")
    parser.add_argument("--email-only", action="store_true", help="no Clever ID columns filled")
    args = parser.parse_args(argv)
    counts = generate(
        args.path, students=args.students, seed=args.seed, churn=args.churn, email_only=args.email_only
    )
    print(" ".join(f"{k}={v}" for k, v in counts.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
