"""Side-by-side latency as Shrink measures it (graph/measure's median_latency), for the Python
benches: each round gives every model a turn of CALLS_PER_TURN calls in a row, in an order rotated
round by round and reversed every other round, so that a slow spell of the machine falls on all
models alike and each follows each other one in turn. Warm: the median of the calls after each turn's first (the model's
weights in the caches, as a model answering calls back to back runs). Cold: the median of each
turn's first call, right after the other models took the caches."""
import statistics
import time

CALLS_PER_TURN = 4


def medians(models, x, rounds):
    """{name: (warm ms, cold ms)} for a {name: model} dict, after one warm-up call each."""
    assert rounds > 0, "at least one round of timing is needed"
    names = list(models)
    warm = {k: [] for k in names}
    cold = {k: [] for k in names}
    for m in models.values():
        m(x)
    for r in range(rounds):
        for turn in range(len(names)):
            at = turn if r % 2 == 0 else len(names) - 1 - turn
            k = names[(at + r) % len(names)]
            for call in range(CALLS_PER_TURN):
                start = time.perf_counter()
                models[k](x)
                (cold if call == 0 else warm)[k].append((time.perf_counter() - start) * 1000)
    return {k: (statistics.median(warm[k]), statistics.median(cold[k])) for k in names}
