"""Cross-client interop between Microsoft's Python SDK and queue-azure, through the emulator.

    python interop.py send <run id> "<connection string>"
    python interop.py check <run id> "<connection string>"

`send` puts one message with every field into session `py-<run id>` of judge-interop.
crates/queue-azure/tests/interop.rs (run with QUEUE_RUNTIME_INTEROP_RUN=<run id>) receives it
with queue-azure, checks each field queue-runtime carries, and sends its own message into
session `rs-<run id>`; `check` receives that one and checks each field as Python sees it.
`cargo xtask test` runs the three in that order against the emulator the judge uses. Prints
`PASS <half>` or `FAIL <half>: why`; the exit status says which.
"""

import datetime
import sys
import time
import uuid

from azure.servicebus import ServiceBusClient, ServiceBusMessage

QUEUE = "judge-interop"
# The values both halves know (interop.rs has the same ones).
MARKER = uuid.UUID("6f1c1c0a-0000-4000-8000-000000000001")
MOMENT = datetime.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone.utc)


def text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def check(condition, why):
    if not condition:
        raise AssertionError(why)


def send(client, run):
    message = ServiceBusMessage(
        b"\x00from python\xff",
        message_id=f"py-{run}",
        session_id=f"py-{run}",
        correlation_id="py-correlation",
        content_type="application/x-interop",
        subject="the subject",
        to="someone",
        reply_to="reply-queue",
        time_to_live=datetime.timedelta(minutes=10),
        scheduled_enqueue_time_utc=datetime.datetime.now(datetime.timezone.utc)
        + datetime.timedelta(seconds=1),
        application_properties={
            "text": "value",
            "int": 42,
            "negative": -7,
            "float": 2.5,
            "bool": True,
            "uuid": MARKER,
            "time": MOMENT,
        },
    )
    with client.get_queue_sender(QUEUE) as sender:
        sender.send_messages(message)


def check_rust(client, run):
    with client.get_queue_receiver(QUEUE, session_id=f"rs-{run}", max_wait_time=15) as receiver:
        got = []
        deadline = time.time() + 15
        while not got and time.time() < deadline:
            got = receiver.receive_messages(max_message_count=1, max_wait_time=1)
        check(len(got) == 1, "queue-azure's message did not arrive")
        received = got[0]
        body = b"".join(received.body)
        check(body == b"\x00from rust\xff", f"body {body!r}")
        expected = {
            "message_id": f"rs-{run}",
            "session_id": f"rs-{run}",
            "correlation_id": "rs-correlation",
            "content_type": "application/x-interop",
        }
        for name, value in expected.items():
            check(text(getattr(received, name)) == value, f"{name}: {getattr(received, name)!r}")
        check(received.time_to_live == datetime.timedelta(minutes=10), f"ttl {received.time_to_live}")
        scheduled = received.scheduled_enqueue_time_utc
        check(scheduled is not None, "no scheduled enqueue time")
        check(received.enqueued_time_utc >= scheduled - datetime.timedelta(milliseconds=1),
              f"enqueued {received.enqueued_time_utc} before its schedule {scheduled}")
        properties = {text(key): text(value) for key, value in received.application_properties.items()}
        wanted = {"text": "value", "number": "42", "unicode": "grüße, 世界"}
        for key, value in wanted.items():
            check(properties.get(key) == value, f"property {key}: {properties.get(key)!r} in {properties}")
        receiver.complete_message(received)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("send", "check"):
        print("usage: interop.py send|check <run id> <connection string>")
        return 2
    half, run, connection_string = sys.argv[1:]
    with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client:
        try:
            (send if half == "send" else check_rust)(client, run)
        except Exception as error:  # a failed half, whatever it raised
            print(f"FAIL interop {half}: {type(error).__name__}: {error}", flush=True)
            return 1
    print(f"PASS interop {half}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
