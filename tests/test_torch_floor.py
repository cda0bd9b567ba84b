"""pyproject.toml's torch floor and the torch APIs nmt/ calls agree: an older torch within the floor would fail at
import (torch.compiler.disable(reason=...) needs 2.8). A new API with a known first version goes in API_SINCE."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# a pattern in nmt/'s source -> (the first torch release that has it, what it is)
API_SINCE = {
    r"compiler\.disable\(\s*reason=": ((2, 8), "torch.compiler.disable(reason=...)"),
    r"torch\.accelerator\.": ((2, 6), "torch.accelerator"),
    r"compiler\.set_stance": ((2, 6), "torch.compiler.set_stance"),
    r"torch\.OutOfMemoryError": ((2, 5), "torch.OutOfMemoryError"),
    r"enable_gqa=": ((2, 5), "scaled_dot_product_attention(enable_gqa=...)"),
    r"flex_attention": ((2, 5), "torch.nn.attention.flex_attention"),
    r"fused=True": ((2, 4), "fused Adam/AdamW on CPU"),
    r"torch\.amp\.GradScaler": ((2, 3), "torch.amp.GradScaler"),
}


def torch_floor() -> tuple[int, int]:
    match = re.search(r'"torch>=(\d+)\.(\d+)', (REPO / "pyproject.toml").read_text())
    assert match, "pyproject.toml names no torch>=X.Y floor"
    return int(match.group(1)), int(match.group(2))


def test_the_torch_floor_has_every_api_nmt_calls():
    source = {path: path.read_text() for path in (REPO / "nmt").rglob("*.py")}
    needed = {name: (since, next(p.relative_to(REPO) for p, text in source.items() if re.search(pattern, text)))
              for pattern, (since, name) in API_SINCE.items() if any(re.search(pattern, t) for t in source.values())}
    assert needed, "no API of the table is used: the table is stale"
    floor = torch_floor()
    too_new = {name: f"torch {since[0]}.{since[1]} ({path})" for name, (since, path) in needed.items() if since > floor}
    assert not too_new, f"pyproject.toml says torch>={floor[0]}.{floor[1]}, but nmt/ calls {too_new}: raise the floor"
