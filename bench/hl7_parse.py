"""HL7 v2 parse throughput of the Python parsers (`hl7`, `hl7apy`) on the shared samples.

--prepare OUT: writes every shared message (CR-separated segments; messages separated by a
blank line) that both Python parsers accept.
--time FILE SECONDS: times each parser on FILE's messages, prints messages/s per parser.
"""

import os
import re
import sys
import time

import hl7
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "testdata")


def shared_messages():
    for d in sorted(os.listdir(SHARED)):
        if not d.startswith("hl7v2-"):
            continue
        for name in sorted(os.listdir(os.path.join(SHARED, d))):
            data = open(os.path.join(SHARED, d, name), "rb").read().decode("utf-8", "replace").lstrip("\ufeff")
            if "MSH" not in data:
                continue
            lines = [l for l in re.split(r"\r\n|\r|\n", data) if l.strip()]
            current = []
            for line in lines:
                if line.startswith("MSH") and current:
                    yield "\r".join(current)
                    current = []
                if line[:3].isalnum():
                    current.append(line)
            if current:
                yield "\r".join(current)


def apy(m):
    return parse_message(m, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)


PARSERS = {"python hl7 0.4.5": hl7.parse, "hl7apy 1.3.5 (tolerant, no groups)": apy}


def accepted(m):
    for parse in PARSERS.values():
        try:
            parse(m)
        except Exception:
            return False
    return True


def main():
    if sys.argv[1] == "--prepare":
        kept = [m for m in shared_messages() if accepted(m)]
        open(sys.argv[2], "w", newline="").write("\n\n".join(kept))
        print(f"{len(kept)} messages")
        return
    messages = [m for m in open(sys.argv[2], newline="").read().split("\n\n") if m.strip()]
    seconds = float(sys.argv[3])
    for name, parse in PARSERS.items():
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for m in messages:
                parse(m)
            n += len(messages)
        rate = n / (time.perf_counter() - start)
        print(f"{name}\t{rate:.0f}")


main()
