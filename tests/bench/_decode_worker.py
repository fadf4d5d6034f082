"""One decode in its own process, for bench_decode.py: INPUT OUTPUT [fast|robust].

`fast` passes the path (the library's normal path for files); `robust` passes an open
file object, which takes the packet-by-packet path used for pipes, stdin and bytes.
"""

from __future__ import annotations

import sys

from voiceprep.decoding import decode


def main() -> None:
    source_path, output_path = sys.argv[1], sys.argv[2]
    engine = sys.argv[3] if len(sys.argv) > 3 else "fast"
    with open(output_path, "wb") as out:
        if engine == "robust":
            with open(source_path, "rb") as source:
                for chunk in decode(source, rate=24000, channels=1):
                    out.write(chunk)
        else:
            for chunk in decode(source_path, rate=24000, channels=1):
                out.write(chunk)


if __name__ == "__main__":
    main()
