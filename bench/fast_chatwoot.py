"""A fast fake Chatwoot for the benchmarks: answers the bot's calls at once and records when
each message arrives.

It is not the tests' fake (tests/fakes.py checks every request against Chatwoot's OpenAPI
document and tops out near 200 requests/s); it only answers what the bench flow needs:

  POST /api/v1/accounts/{a}/conversations/{c}/messages   -> {"id": n, ...}, recorded
  GET  /api/v1/accounts/{a}/conversations/{c}            -> the conversation, its last message
  anything else under /api/                              -> {}
  GET  /_records                                         -> [[conversation, content, epoch]...]
  POST /_reset                                           -> forget the records

Run: `python bench/fast_chatwoot.py PORT`. Plain asyncio and HTTP/1.1 keep-alive, one process.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

MESSAGES = re.compile(rb"^/api/v1/accounts/(\d+)/conversations/(\d+)/messages$")
CONVERSATION = re.compile(rb"^/api/v1/accounts/(\d+)/conversations/(\d+)$")


class Fake:
    def __init__(self) -> None:
        self.records: list[tuple[int, str, float]] = []
        self.last: dict[int, dict[str, object]] = {}
        self.next_id = 1

    def answer(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        if method == b"POST":
            found = MESSAGES.match(path)
            if found is not None:
                conv = int(found.group(2))
                data = json.loads(body or b"{}")
                content = str(data.get("content"))
                self.records.append((conv, content, time.time()))
                message = {
                    "id": self.next_id,
                    "content": content,
                    "message_type": 1,
                    "conversation_id": conv,
                    "created_at": int(time.time()),
                }
                self.next_id += 1
                self.last[conv] = message
                return 200, json.dumps(message).encode()
            if path == b"/_reset":
                self.records.clear()
                return 200, b"{}"
        if method == b"GET":
            if path == b"/_records":
                return 200, json.dumps(self.records).encode()
            found = CONVERSATION.match(path)
            if found is not None:
                conv = int(found.group(2))
                last = self.last.get(conv)
                shown = {"id": conv, "messages": [last] if last else []}
                return 200, json.dumps({**shown, "last_non_activity_message": last}).encode()
        return 200, b"{}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, target, _ = lines[0].split(b" ", 2)
                length = 0
                for line in lines[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:].strip())
                body = await reader.readexactly(length) if length else b""
                status, payload = self.answer(method, target.split(b"?", 1)[0], body)
                writer.write(
                    b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d"
                    b"\r\n\r\n" % (status, len(payload)) + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def main(port: int) -> None:
    fake = Fake()
    server = await asyncio.start_server(fake.serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
