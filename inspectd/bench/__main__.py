"""``python -m inspectd.bench --subscriber ENDPOINT``: the bench's subscriber process."""
import sys

from inspectd.bench import _subscriber_main

if len(sys.argv) == 3 and sys.argv[1] == "--subscriber":
    sys.exit(_subscriber_main(sys.argv[2]))
sys.exit("usage: python -m inspectd.bench --subscriber ENDPOINT (the bench's subscriber process)")
