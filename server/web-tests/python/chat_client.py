"""A Socket.IO chat client written with python-socketio (pinned in
requirements.txt), as any Python user of a Socket.IO server would write it:
it connects to URL as NICK, says each line of stdin as `chat message`, and
prints every `chat message` it receives, one per line (`got TEXT`).

Used by socketio.test.mjs against the real chat-server.
"""

import sys
import threading

import socketio


def main():
    url, nick = sys.argv[1], sys.argv[2]
    client = socketio.Client(reconnection=False)
    connected = threading.Event()

    @client.event
    def connect():
        print(f"connected {client.transport()}", flush=True)
        connected.set()

    @client.event
    def connect_error(data):
        print(f"connect_error {data}", flush=True)
        sys.exit(1)

    @client.on("chat message")
    def chat_message(text, offset=None):
        print(f"got {text}", flush=True)

    client.connect(url, auth={"nick": nick})
    connected.wait(10)
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line:
            client.emit("chat message", line)
    client.disconnect()


if __name__ == "__main__":
    main()
