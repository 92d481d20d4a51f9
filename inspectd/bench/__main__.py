"""``python -m inspectd.bench --subscriber ENDPOINT``: the bench's subscriber process."""
import sys

from inspectd.bench.subscriber import subscriber_main

if len(sys.argv) == 3 and sys.argv[1] == "--subscriber":
    sys.exit(subscriber_main(sys.argv[2]))
sys.exit("usage: python -m inspectd.bench --subscriber ENDPOINT (the bench's subscriber process)")
