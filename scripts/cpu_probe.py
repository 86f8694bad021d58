"""How steady the machine's CPU is: a fixed piece of work, timed over and
over by the CPU time it took.

Machines of the project's kind change speed within seconds, without the
hypervisor reporting any of it as steal: the same loop sometimes takes
half as long again, and the thread was on a CPU the whole time (the guest
counts the time its virtual CPU did not run as the thread's). A load at
80 % of a peak measured at the usual speed is more than such a stretch can
carry, so the benchmark reports how much of the time the machine was slow
beside its fixed-rate figures (docs/performance.md, "Where the time goes").

Usage: python3 cpu_probe.py SECONDS  →  one JSON object on stdout.
"""
import json
import sys
import time

# About 5 ms of work on the project's machines: fine enough to see a
# stretch of a few tens of milliseconds, long enough that timing it costs
# nothing next to it.
CHUNK = 200_000
# A chunk is slow when it took at least this many times the usual CPU time.
SLOW = 1.4


def chunk():
    s = 0
    for i in range(CHUNK):
        s += i
    return s


def probe(seconds):
    samples = []  # (CPU seconds, wall seconds) of each chunk
    end = time.perf_counter() + seconds
    while not samples or time.perf_counter() < end:
        c0, w0 = time.thread_time(), time.perf_counter()
        chunk()
        samples.append((time.thread_time() - c0, time.perf_counter() - w0))
    cpu = sorted(c for c, _ in samples)
    # The usual time: the fast end of the distribution, which a slow
    # stretch cannot pull up (a tenth of the chunks, not the very fastest).
    usual = cpu[len(cpu) // 10]
    slow = [c >= SLOW * usual for c, _ in samples]
    stretches, run = [], 0.0
    for (c, w), is_slow in zip(samples, slow):
        if is_slow:
            run += w
        elif run:
            stretches.append(run)
            run = 0.0
    if run:
        stretches.append(run)
    slow_cpu = sorted(c for (c, _), s in zip(samples, slow) if s)
    total_wall = sum(w for _, w in samples)
    return {
        "seconds": round(total_wall, 1),
        "chunks": len(samples),
        "usual_chunk_ms": round(usual * 1e3, 2),
        "slow_time_pct": round(100 * sum(w for (_, w), s in zip(samples, slow) if s) / total_wall, 1),
        "slow_stretches": len(stretches),
        "longest_slow_ms": round(max(stretches, default=0.0) * 1e3),
        # How fast the machine ran in its slow chunks, against the usual.
        "slow_speed_pct": round(100 * usual / slow_cpu[len(slow_cpu) // 2]) if slow_cpu else None,
        # Time the probe waited for a CPU: near zero says the slow chunks
        # were the CPU itself, not another process sharing it.
        "waited_pct": round(100 * (1 - sum(c for c, _ in samples) / total_wall), 1),
    }


if __name__ == "__main__":
    print(json.dumps(probe(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)))
