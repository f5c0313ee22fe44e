"""Reads `perf script` output (samples with call chains) of one process and
writes the folded stacks inferno-flamegraph draws, then prints where the
samples went: by thread, by the frame on top (self), the kernel's share, and
the gateway's own functions counted once per sample wherever they are on the
stack (inclusive).

    python3 loadtest/profile_report.py PERF_SCRIPT_TXT FOLDED_OUT
"""

import collections
import re
import sys

# "tokio-rt-worker 1234 71515.042957: 1001001 cpu-clock:" (pid/tid with -s).
HEADER = re.compile(r"^(\S.*?)\s+(\d+)(?:/(\d+))?\s+[\d.]+:")
FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.+?)\s+\((.*)\)$")
OWN = ("promptgate", "promptgate_core", "promptgate_log")


def simplify(symbol: str) -> str:
    """Drops the +0x offset and the hash suffix, and generic arguments deeper
    than one level, so that one function is one frame."""
    symbol = re.sub(r"\+0x[0-9a-f]+$", "", symbol)
    symbol = re.sub(r"::h[0-9a-f]{16}$", "", symbol)
    depth, kept = 0, []
    for char in symbol:
        if char == "<":
            depth += 1
            if depth == 1:
                kept.append("<…>")
            continue
        if char == ">":
            depth -= 1
            continue
        if depth == 0:
            kept.append(char)
    return "".join(kept).replace(";", ":")


def samples(lines):
    thread, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            if thread is not None:
                yield thread, frames
            thread, frames = None, []
            continue
        header = HEADER.match(line)
        if header and not line.startswith(("\t", " ")):
            thread, frames = header.group(1).strip(), []
            continue
        frame = FRAME.match(line)
        if frame and thread is not None:
            frames.append((simplify(frame.group(1)), frame.group(2)))
    if thread is not None:
        yield thread, frames


def main() -> None:
    source, folded_out = sys.argv[1], sys.argv[2]
    folded = collections.Counter()
    threads = collections.Counter()
    tops = collections.Counter()
    inclusive = collections.Counter()
    kernel = 0
    total = 0
    with open(source, errors="replace") as text:
        for thread, frames in samples(text):
            total += 1
            # Worker threads are numbered by tokio; one name per kind.
            kind = re.sub(r"[-_ ]?\d+$", "", thread)
            threads[kind] += 1
            if not frames:
                continue
            top, dso = frames[0]
            tops[top] += 1
            if "kernel" in dso:
                kernel += 1
            seen = set()
            for symbol, _ in frames:
                if symbol.split("::")[0].lstrip("<…>") in OWN and symbol not in seen:
                    seen.add(symbol)
                    inclusive[symbol] += 1
            folded[";".join([kind] + [s for s, _ in reversed(frames)])] += 1
    with open(folded_out, "w") as out:
        for stack, count in folded.items():
            out.write(f"{stack} {count}\n")
    if total == 0:
        print("no samples")
        return
    share = lambda n: f"{100 * n / total:.1f} %"  # noqa: E731
    print(f"{total} samples; in the kernel (syscalls, network stack, scheduler): {share(kernel)}")
    print("\n| thread | share |\n|---|---|")
    for name, n in threads.most_common(8):
        print(f"| {name} | {share(n)} |")
    print("\n| top frame (self) | share |\n|---|---|")
    for name, n in tops.most_common(15):
        print(f"| `{name[:110]}` | {share(n)} |")
    print("\n| the gateway's own functions (inclusive) | share |\n|---|---|")
    for name, n in inclusive.most_common(20):
        print(f"| `{name[:110]}` | {share(n)} |")
    print()


if __name__ == "__main__":
    main()
