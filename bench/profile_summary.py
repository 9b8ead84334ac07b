"""Summarise py-spy collapsed stacks (`bench/run.py --profile DIR`): where the server's time goes.

    .venv/bin/python bench/profile_summary.py DIR/saturation-chatapp.txt [--top 25] [--match chatapp]

Prints the functions with the most samples on the stack (inclusive) and at the top of the
stack (self), as % of all samples, skipping idle samples (the eventlet hub waiting in epoll).
"""
import argparse
import collections
import re

IDLE = ("poll (eventlet/hubs", "epoll.poll", "select (", "wait (eventlet/hubs/epolls")


def frames(stack):
    return [re.sub(r" \(.*?/site-packages/", " (", f) for f in stack.split(";")]


def summarise(path, top, match):
    inclusive, self_time = collections.Counter(), collections.Counter()
    total = idle = 0
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        n = int(count)
        fs = frames(stack)
        total += n
        if any(marker in fs[-1] for marker in IDLE):
            idle += n
            continue
        self_time[fs[-1]] += n
        for f in set(fs):
            inclusive[f] += n
    busy = max(1, total - idle)
    print(f"{path}: {total} samples, {idle} idle ({100 * idle / max(1, total):.0f}%); "
          f"percentages below are of the {busy} busy samples")
    print("inclusive:")
    for f, n in inclusive.most_common():
        if match and match not in f:
            continue
        print(f"  {100 * n / busy:5.1f}%  {f}")
        top -= 1
        if top <= 0:
            break
    print("self:")
    for f, n in self_time.most_common(15):
        print(f"  {100 * n / busy:5.1f}%  {f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    summarise(args.path, args.top, args.match)
