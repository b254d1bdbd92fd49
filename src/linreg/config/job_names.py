"""How a sweep job is named (its folder, TensorBoard's run name, the report's labels): by the
values of the settings the sweep varies, `adam,lr=0.01`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence


def split_override(override: str) -> tuple[str, str]:
    """`+optimizer.lr=0.01` -> (`optimizer.lr`, `0.01`)."""
    key, _, value = override.lstrip("+~").partition("=")
    return key, value


def short_keys(keys: Iterable[str]) -> dict[str, str]:
    """Each key's last part (`optimizer.lr` -> `lr`), unless two keys share it."""
    keys = list(dict.fromkeys(keys))
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: short if last.count(short) == 1 else key for key, short in zip(keys, last, strict=True)
    }


def compact(value: str) -> str:
    """A searched number in four significant digits (`0.0024348773534554596` -> `0.002435`)."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if len(value) > 8 else value


def settings_label(
    settings: Sequence[tuple[str, str]], separator: str = ",", groups: Collection[str] = ()
) -> str:
    """`optimizer=adam,lr=0.01` for [("optimizer", "adam"), ("optimizer.lr", "0.01")];
    `adam,lr=0.01` where `optimizer` is one of the config `groups` (a choice reads as its name)."""
    short = short_keys(key for key, _ in settings)
    return separator.join(
        compact(value) if key in groups else f"{short[key]}={compact(value)}"
        for key, value in settings
    )
