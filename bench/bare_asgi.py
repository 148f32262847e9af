"""The floor under make_knock: a bare ASGI app on Antechamber's stack, answering constant JSON.

uvicorn with httptools and uvloop, as `antechamber serve` runs, one process, no middleware, no
routing, no logging: every request gets the same 200 body of a make_knock answer's size. What
it costs per request is what the server stack costs before any of Antechamber's work (issue 15:
"CPU per request against a bare ASGI app on the same stack, as the floor").

    python -m bench.bare_asgi --port 8009 [--body-bytes 700]
"""

import argparse
import json

from starlette.types import Receive, Scope, Send

# About the size of a make_knock answer in a v12 room (room_version and the template).
DEFAULT_BODY_BYTES = 700


def make_app(body_bytes: int):  # type: ignore[no-untyped-def]
    body = (json.dumps({"padding": "x" * max(0, body_bytes - 16)}) + "\n").encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-bytes", type=int, default=DEFAULT_BODY_BYTES)
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.body_bytes),
        host="127.0.0.1",
        port=args.port,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main()
