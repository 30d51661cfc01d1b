"""Helpers for the console tests: CSRF tokens from pages, roster CSVs."""

from __future__ import annotations

import re

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
TEACHER = "HS1,Riverside High,adams@riverside.example.edu,Pat,Adams,HS1-PE,PE 1,"
HEADER = (
    "school_id,school_name,teacher_email,teacher_first_name,teacher_last_name,class_id,class_name,"
    "student_first_name,student_last_name,student_email,student_grade_level\n"
)
GOOD_CSV = (
    HEADER
    + TEACHER
    + "Sam,Lee,sam.lee@riverside.example.edu,9\n"
    + TEACHER
    + "Jo,Kim,jo.kim@riverside.example.edu,10\n"
)
# line 3 has no student email and a grade that is not one
BAD_CSV = HEADER + TEACHER + "Sam,Lee,sam.lee@riverside.example.edu,9\n" + TEACHER + "Jo,Kim,,eleventy\n"


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)
