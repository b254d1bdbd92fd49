"""The synthetic data: reproducible, disjoint splits, a known answer, and whole-batch shuffling."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import torch
from conftest import needs_gpus

from linreg.data.loaders import EpochShuffler, StreamingLoader, WholeBatchLoader, prefetched
from linreg.data.synthetic import SyntheticRegressionDataModule
from linreg.diagnostics.reference import least_squares
from linreg.execution import Executions

SETTINGS = dict(
    n_samples=1000,
    n_features=5,
    n_targets=2,
    noise_std=0.1,
    feature_scale=5.0,
    feature_offset=3.0,
    train_fraction=0.7,
    val_fraction=0.15,
    test_fraction=0.15,
    batch_size=64,
    seed=7,
)


def datamodule(**changes: object) -> SyntheticRegressionDataModule:
    dm = SyntheticRegressionDataModule(**{**SETTINGS, **changes})
    dm.setup()
    return dm


def test_same_seed_gives_bit_identical_data_and_ground_truth() -> None:
    first, second = datamodule(), datamodule()
    for name in ("train", "val", "test"):
        for a, b in zip(first.split(name), second.split(name), strict=True):
            assert torch.equal(a, b)
    assert torch.equal(first.ground_truth.weight, second.ground_truth.weight)
    assert torch.equal(first.ground_truth.bias, second.ground_truth.bias)


def test_different_seed_gives_different_data() -> None:
    assert not torch.equal(datamodule().split("train")[0], datamodule(seed=8).split("train")[0])


def test_splits_are_disjoint_and_cover_every_row_in_the_configured_proportions() -> None:
    dm = datamodule()
    sizes = [len(dm.split(name)[0]) for name in ("train", "val", "test")]
    assert sizes == [700, 150, 150]
    rows = torch.cat([dm.split(name)[0] for name in ("train", "val", "test")])
    assert len(torch.unique(rows, dim=0)) == 1000


def test_targets_follow_the_ground_truth_up_to_the_noise() -> None:
    dm = datamodule()
    features, targets = dm.split("train")
    residual = targets - (features @ dm.ground_truth.weight.T + dm.ground_truth.bias)
    assert residual.shape == (700, 2)
    assert residual.std().item() == pytest.approx(0.1, rel=0.1)


def test_noise_free_data_is_solved_exactly_by_least_squares() -> None:
    dm = datamodule(noise_std=0.0)
    fit = least_squares(dm.batches("train"))
    weight, bias = fit.weight, fit.bias
    torch.testing.assert_close(weight.float(), dm.ground_truth.weight, atol=1e-4, rtol=0)
    torch.testing.assert_close(bias.float(), dm.ground_truth.bias, atol=1e-4, rtol=0)


def test_features_are_offset_and_scaled_so_standardisation_matters() -> None:
    features, _ = datamodule(n_samples=20_000).split("train")
    assert features.mean().item() == pytest.approx(3.0, abs=0.1)
    assert features.std().item() == pytest.approx(5.0, rel=0.05)


def loader(n_rows: int = 100, batch_size: int = 32, seed: int = 0) -> WholeBatchLoader:
    features = torch.arange(n_rows, dtype=torch.float32).unsqueeze(1)
    return WholeBatchLoader(features, features * 2, batch_size, EpochShuffler(n_rows, seed))


def epoch_order(batches: WholeBatchLoader, epoch: int) -> torch.Tensor:
    batches.sampler.set_epoch(epoch)
    return torch.cat([features for features, _ in batches]).squeeze(1)


def test_every_sample_is_seen_exactly_once_per_epoch_in_whole_batches() -> None:
    batches = loader()
    assert len(batches) == 4
    sizes = [len(features) for features, _ in batches]
    assert sizes == [32, 32, 32, 4]
    assert sorted(epoch_order(batches, 0).tolist()) == list(range(100))


def test_executions_group_consecutive_batches_of_the_same_shuffled_epoch() -> None:
    batches = loader(n_rows=100, batch_size=8)  # 13 batches, the last of 4 rows
    groups = Executions(batches, steps_per_execution=5)
    assert len(groups) == 3
    assert groups.sampler is batches.sampler  # Lightning's set_epoch reaches the shuffle
    groups.sampler.set_epoch(3)
    grouped = list(groups)
    assert [len(group) for group in grouped] == [5, 5, 3]
    ungrouped = [features for features, _ in batches]  # the same epoch, batch by batch
    flat = [features for group in grouped for features, _ in group]
    assert all(torch.equal(a, b) for a, b in zip(flat, ungrouped, strict=True))
    assert [len(features) for features in flat][-1] == 4


def test_features_and_targets_stay_paired_after_shuffling() -> None:
    for features, targets in loader():
        assert torch.equal(targets, features * 2)


def test_order_differs_between_epochs_and_repeats_for_the_same_seed_and_epoch() -> None:
    batches = loader()
    first, second = epoch_order(batches, 0), epoch_order(batches, 1)
    assert not torch.equal(first, second)
    assert torch.equal(epoch_order(loader(), 1), second)
    assert not torch.equal(epoch_order(loader(seed=1), 1), second)


def test_eval_loaders_keep_the_split_order() -> None:
    dm = datamodule()
    features = torch.cat([batch[0] for batch in dm.val_dataloader()])
    assert torch.equal(features, dm.split("val")[0])
    assert dm.val_dataloader().sampler is None
    assert dm.train_dataloader().sampler is not None


@pytest.mark.parametrize(("n_rows", "batch_size"), [(100, 8), (101, 8), (17, 4), (9, 4)])
def test_ddp_shards_see_every_sample_once_in_equal_numbers_of_batches(
    n_rows: int, batch_size: int
) -> None:
    features = torch.arange(n_rows, dtype=torch.float32).unsqueeze(1)
    shards = [
        WholeBatchLoader(features, features, batch_size, EpochShuffler(n_rows, 3), rank, 2)
        for rank in (0, 1)
    ]
    for shard in shards:
        shard.sampler.set_epoch(1)
    batches = [[b for b, _ in shard] for shard in shards]
    assert len(batches[0]) == len(batches[1]) == len(shards[0])
    assert all(len(b) >= 1 for shard in batches for b in shard)
    seen = torch.cat([b for shard in batches for b in shard]).squeeze(1)
    assert sorted(seen.tolist()) == list(range(n_rows))
    assert max(len(b) for shard in batches for b in shard) <= batch_size + 1


def test_single_process_batches_are_unchanged_by_sharding_support() -> None:
    batches = loader(n_rows=10, batch_size=4)
    assert [len(f) for f, _ in batches] == [4, 4, 2]


def streamed(**changes: object) -> SyntheticRegressionDataModule:
    return datamodule(streaming=True, **changes)


def test_streamed_batches_are_drawn_the_same_every_time_from_seed_split_and_index() -> None:
    stream = streamed().streams["train"]
    first, again = stream.batch(3, torch.device("cpu")), stream.batch(3, torch.device("cpu"))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(stream.batch(4, torch.device("cpu"))[0], first[0])
    val_batch = streamed().streams["val"].batch(2, torch.device("cpu"))[0]
    assert not torch.equal(val_batch, first[0][: len(val_batch)])
    assert not torch.equal(
        streamed(seed=8).streams["train"].batch(3, torch.device("cpu"))[0], first[0]
    )


def test_streamed_splits_have_the_configured_sizes_and_follow_the_ground_truth() -> None:
    dm = streamed(noise_std=0.0)
    sizes = [sum(len(f) for f, _ in dm.batches(name)) for name in ("train", "val", "test")]
    assert sizes == [700, 150, 150]
    assert torch.equal(dm.ground_truth.weight, datamodule().ground_truth.weight)
    weight = least_squares(dm.batches("train")).weight
    torch.testing.assert_close(weight.float(), dm.ground_truth.weight, atol=1e-4, rtol=0)
    features, _ = dm.sample("train", 100)
    assert features.shape == (100, 5)
    with pytest.raises(RuntimeError, match="never held whole"):
        dm.split("train")


def test_streamed_epochs_visit_every_batch_once_in_a_seeded_order() -> None:
    dm = streamed()
    loaders = [dm.train_dataloader() for _ in range(2)]
    orders = []
    for epoch in (0, 1):
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        first = [f[0, 0].item() for f, _ in loaders[0]]
        assert first == [f[0, 0].item() for f, _ in loaders[1]]  # same seed, same order
        orders.append(first)
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]
    assert len(orders[0]) == len(loaders[0]) == 11  # ceil(700 / 64)


def test_streamed_ddp_shards_are_disjoint_and_equal_in_length() -> None:
    from linreg.data.loaders import StreamingLoader

    stream = streamed().streams["train"]
    shards = [
        StreamingLoader(stream, None, torch.device("cpu"), rank, world_size=2) for rank in (0, 1)
    ]
    firsts = [{f[0, 0].item() for f, _ in shard} for shard in shards]
    assert len(shards[0]) == len(shards[1]) == 5
    assert not firsts[0] & firsts[1]


@pytest.mark.slow
def test_shuffles_and_streamed_batches_are_the_same_in_another_process() -> None:
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from linreg.data.loaders import EpochShuffler\n"
        "from linreg.data.synthetic import SyntheticRegressionDataModule\n"
        "s = EpochShuffler(10, 7); s.set_epoch(3)\n"
        "print(s.permutation(torch.device('cpu')).tolist())\n"
        "dm = SyntheticRegressionDataModule(n_samples=1000, n_features=5, n_targets=2,"
        " noise_std=0.1, feature_scale=5.0, feature_offset=3.0, train_fraction=0.7,"
        " val_fraction=0.15, test_fraction=0.15, batch_size=64, seed=7, streaming=True)\n"
        "dm.setup(); print(dm.streams['val'].batch(1, torch.device('cpu'))[0].sum().item())\n"
    )
    lines = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    shuffler = EpochShuffler(10, 7)
    shuffler.set_epoch(3)
    assert lines[0] == str(shuffler.permutation(torch.device("cpu")).tolist())
    batch = streamed().streams["val"].batch(1, torch.device("cpu"))[0]
    assert float(lines[1]) == batch.sum().item()


META = torch.device("meta")  # no values, no memory: it shows what a non-CPU device is handed


def test_streamed_batches_are_drawn_on_the_cpu_and_moved_to_the_device() -> None:
    # A GPU's generator gives other numbers for the same seed: batch i must be drawn on the CPU on
    # every device, so the trainer's batches are the rows the reference and eval.py read.
    stream = streamed().streams["train"]
    features, targets = stream.batch(3, META)
    on_cpu = stream.batch(3, torch.device("cpu"))
    assert (features.device, targets.device) == (META, META)
    assert (features.shape, targets.shape) == (on_cpu[0].shape, on_cpu[1].shape)
    assert [f.device for f, _ in StreamingLoader(stream, None, META)] == [META] * stream.n_batches


@needs_gpus(1)
def test_streamed_gpu_batches_equal_the_cpu_batches() -> None:
    stream = streamed().streams["val"]
    cuda = torch.device("cuda")
    for index in range(stream.n_batches):
        on_gpu, on_cpu = stream.batch(index, cuda), stream.batch(index, torch.device("cpu"))
        assert torch.equal(on_gpu[0].cpu(), on_cpu[0]) and torch.equal(on_gpu[1].cpu(), on_cpu[1])
    shuffler = EpochShuffler(100, 7)
    assert torch.equal(shuffler.permutation(cuda).cpu(), shuffler.permutation(torch.device("cpu")))


def test_least_squares_gives_the_same_answer_in_any_chunking() -> None:
    # Batches are merged as centred moments: one batch, or 17 uneven ones, is the same fit.
    generator = torch.Generator().manual_seed(0)
    features = 1e4 + torch.randn(1000, 3, generator=generator, dtype=torch.float64)
    targets = features @ torch.tensor([[1.0], [-2.0], [3.0]], dtype=torch.float64) + 5
    whole = least_squares([(features, targets)])
    bounds = [0, 1, 2, 50, 51, 300, 301, 302, 500, 640, 700, 800, 850, 900, 950, 999, 1000]
    pieces = least_squares((features[a:b], targets[a:b]) for a, b in itertools.pairwise(bounds))
    torch.testing.assert_close(pieces.weight, whole.weight, rtol=1e-9, atol=0)
    torch.testing.assert_close(pieces.bias, whole.bias, rtol=1e-9, atol=0)
    torch.testing.assert_close(whole.weight, torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64))


# ------------------------------------------------------------------------------ reading ahead


def test_prefetched_keeps_the_order_and_reads_at_most_depth_ahead() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(50):
            produced.append(i)
            yield i

    served = []
    for item in prefetched(items(), depth=2):
        time.sleep(0.002)  # the consumer is slower: the producer waits on a full queue
        assert len(produced) - item <= 4  # queued 2, 1 being handed over, 1 served
        served.append(item)
    assert served == list(range(50))


def test_an_error_while_reading_ahead_is_raised_where_it_happened() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("row 3 is bad")

    served = []
    with pytest.raises(ValueError, match="row 3 is bad"):
        for item in prefetched(items()):
            served.append(item)
    assert served == [1, 2]


def test_leaving_early_stops_the_reader_and_closes_what_it_read() -> None:
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            yield from itertools.count()
        finally:
            closed.set()

    before = threading.active_count()
    taken = list(itertools.islice(prefetched(items()), 3))
    assert taken == [0, 1, 2]
    assert closed.wait(5)
    assert threading.active_count() == before


def test_a_small_split_makes_min_batches_full_batches_an_epoch_from_several_fresh_passes() -> None:
    # 100 rows in batches of 32 are 4 batches a pass; at least 10 batches an epoch are 320 rows,
    # 3.2 passes, each pass a permutation of the rows, another draw each epoch, the same draw for
    # the same (seed, epoch).
    features = torch.arange(100, dtype=torch.float32).unsqueeze(1)

    def small(seed: int = 0) -> WholeBatchLoader:
        return WholeBatchLoader(
            features, features * 2, 32, EpochShuffler(100, seed), min_batches=10
        )

    batches = small()
    assert len(batches) == 10 and batches.pass_batches == 4 and batches.passes == 3.2
    assert [len(f) for f, _ in batches] == [32] * 10
    order = epoch_order(batches, 1)
    for first in (0, 100, 200):  # whole passes, each every row once
        assert sorted(order[first : first + 100].tolist()) == list(range(100))
    assert len(set(order[300:].tolist())) == 20
    assert not torch.equal(order[:100], order[100:200])
    assert torch.equal(order[:100], epoch_order(loader(), 1))  # its first pass is the shuffle
    assert not torch.equal(epoch_order(batches, 2), order)
    assert torch.equal(epoch_order(small(), 1), order)
    for batch_features, batch_targets in batches:
        assert torch.equal(batch_targets, batch_features * 2)
    # A split smaller than one batch: every batch is the whole split, shuffled.
    whole = WholeBatchLoader(features, features, 256, EpochShuffler(100, 0), min_batches=5)
    assert [sorted(f.squeeze(1).tolist()) for f, _ in whole] == [list(range(100))] * 5
    # Unshuffled, the passes repeat the split in order.
    in_order = WholeBatchLoader(features, features, 32, None, min_batches=5)
    assert torch.cat([f for f, _ in in_order]).squeeze(1).tolist() == [*range(100), *range(60)]
    # Enough batches already: one pass, as without the option.
    assert len(WholeBatchLoader(features, features, 8, EpochShuffler(100, 0), min_batches=5)) == 13


def test_min_batches_under_ddp_give_each_process_its_share_of_every_batch() -> None:
    features = torch.arange(100, dtype=torch.float32).unsqueeze(1)
    shards = [WholeBatchLoader(features, features, 32, EpochShuffler(100, 3), rank, 2,
                               min_batches=6) for rank in (0, 1)]  # fmt: skip
    assert [len(shard) for shard in shards] == [6, 6]  # global batches of 64 rows, 3.84 passes
    rows = [[f.squeeze(1) for f, _ in shard] for shard in shards]
    assert all(len(batch) == 32 for shard in rows for batch in shard)
    together = torch.stack([torch.stack(rows[0]), torch.stack(rows[1])], dim=-1).flatten()
    assert torch.equal(together, EpochShuffler(100, 3).permutation(torch.device("cpu"), 384))


def test_the_data_module_draws_small_epochs_in_passes_and_keeps_evaluation_as_it_is() -> None:
    # 700 training rows in batches of 64: 11 batches a pass; at least 32 are 2.93 passes.
    assert datamodule().epoch_batches() is None
    several = datamodule(min_batches_per_epoch=32)
    assert len(several.train_dataloader()) == 32
    assert several.epoch_batches() == (32, 11, 32 * 64 / 700)
    assert len(several.val_dataloader()) == 3  # evaluation is one pass (150 rows)
    assert datamodule(min_batches_per_epoch=11).epoch_batches() is None
    assert len(datamodule(min_batches_per_epoch=32, shuffle=False).train_dataloader()) == 32
    streamed = datamodule(min_batches_per_epoch=32, streaming=True)
    assert len(streamed.train_dataloader()) == 11 and streamed.epoch_batches() is None


def test_a_capped_epoch_is_a_fresh_random_draw_of_max_batches_batches() -> None:
    # 100 rows in batches of 8 are 13 batches; a cap of 3 ends each epoch after 24 distinct rows,
    # different rows each epoch, the same rows again for the same (seed, epoch): a resumed run
    # replays its epochs.
    features = torch.arange(100, dtype=torch.float32).unsqueeze(1)

    def capped(seed: int = 0) -> WholeBatchLoader:
        return WholeBatchLoader(features, features * 2, 8, EpochShuffler(100, seed), max_batches=3)

    batches = capped()
    assert len(batches) == 3
    draws = [epoch_order(batches, epoch) for epoch in range(4)]
    assert all(len(draw) == 24 == len(set(draw.tolist())) for draw in draws)
    assert len({tuple(sorted(draw.tolist())) for draw in draws}) == 4
    assert torch.equal(epoch_order(capped(), 2), draws[2])
    whole = loader(n_rows=100, batch_size=8)
    assert torch.equal(draws[1], epoch_order(whole, 1)[:24])  # the first batches of that shuffle
    for batch_features, batch_targets in batches:
        assert torch.equal(batch_targets, batch_features * 2)
    assert len(WholeBatchLoader(features, features, 8, EpochShuffler(100, 0), max_batches=50)) == 13


def test_a_capped_epoch_under_ddp_gives_each_process_max_batches_of_distinct_rows() -> None:
    features = torch.arange(100, dtype=torch.float32).unsqueeze(1)
    shards = [WholeBatchLoader(features, features, 8, EpochShuffler(100, 3), rank, 2, max_batches=2)
              for rank in (0, 1)]  # fmt: skip
    seen = [epoch_order(shard, 1) for shard in shards]
    assert [len(shard) for shard in shards] == [2, 2]
    assert len(seen[0]) == len(seen[1]) == 16
    assert not set(seen[0].tolist()) & set(seen[1].tolist())


def test_an_unshuffled_loader_refuses_a_cap_that_would_repeat_the_same_rows() -> None:
    features = torch.zeros(100, 1)
    with pytest.raises(ValueError, match="needs a sampler"):
        WholeBatchLoader(features, features, 8, None, max_batches=3)


def test_the_data_module_caps_shuffled_training_only_and_says_when() -> None:
    # 700 training rows in batches of 64: 11 batches.
    capped = datamodule(max_batches_per_epoch=4)
    assert len(capped.train_dataloader()) == 4
    assert sum(len(f) for f, _ in capped.train_dataloader()) == 256
    assert capped.epoch_batches() == (4, 11, 256 / 700)
    assert len(capped.val_dataloader()) == 3  # evaluation is never capped (150 rows)
    assert datamodule(max_batches_per_epoch=11).epoch_batches() is None
    unshuffled = datamodule(max_batches_per_epoch=4, shuffle=False)
    assert len(unshuffled.train_dataloader()) == 11 and unshuffled.epoch_batches() is None
    assert datamodule(max_batches_per_epoch=4, streaming=True).epoch_batches() is None


def test_evaluation_batches_are_eval_batch_size_rows_and_measure_the_same() -> None:
    from linreg.models.metrics import regression_metrics

    small, large = datamodule(eval_batch_size=7), datamodule(eval_batch_size=16384)
    assert len(small.val_dataloader()) == 22 and len(large.test_dataloader()) == 1
    assert len(small.train_dataloader()) == 11  # training keeps batch_size
    weight = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    values = []
    for module in (small, large):
        metrics = regression_metrics("val/")
        for features, targets in module.val_dataloader():
            metrics.update(features @ weight.T, targets)
        values.append({name: value.item() for name, value in metrics.compute().items()})
    assert values[0] == pytest.approx(values[1], rel=1e-5)  # float32 sums, grouped otherwise


def test_a_batch_already_on_the_device_is_handed_on_as_it_is() -> None:
    module = datamodule()
    cpu = torch.device("cpu")
    pair = (torch.ones(4, 3), torch.ones(4, 1))
    execution = [pair, (torch.zeros(2, 3), torch.zeros(2, 1))]
    assert module.transfer_batch_to_device(execution, cpu, 0) is execution
    assert module.transfer_batch_to_device(pair, cpu, 0) is pair
    # Elsewhere, or not a list of pairs: moved as Lightning moves it.
    moved = module.transfer_batch_to_device(execution, torch.device("meta"), 0)
    assert [tensor.device.type for batch in moved for tensor in batch] == ["meta"] * 4
    assert [tensor.shape for batch in moved for tensor in batch] == [
        tensor.shape for batch in execution for tensor in batch
    ]
    named = {"features": pair[0]}
    assert module.transfer_batch_to_device(named, cpu, 0) == named
