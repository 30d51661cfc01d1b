"""The baseline for the resolve benchmark: the smallest FastAPI app, served exactly like roster-api."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "Hello World"}
