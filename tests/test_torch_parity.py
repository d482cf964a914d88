"""Oracle 2: PyTorch autograd. The same weights in an equivalent PyTorch model give the
same logits, loss and every parameter gradient."""

import numpy as np
import pytest

from minigpt import GPT, GPTConfig, kernels

TOLERANCE = {np.float64: 1e-9, np.float32: 1e-4}


def relative(a, b):
    return np.abs(a - b).max() / max(1e-8, np.abs(b).max())


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_logits_loss_and_gradients_match_pytorch(dtype, backend, bias, torch):
    from minigpt.torch_reference import from_minigpt

    config = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=3, n_embd=24, bias=bias)
    model = GPT(config, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    for p in model.params.values():  # move off the symmetric init so every path matters
        p += rng.normal(0, 0.05, p.shape).astype(dtype)
    idx = rng.integers(0, 37, (3, 11))
    targets = rng.integers(0, 37, (3, 11))
    targets[0, 3:7] = -100

    with kernels.using(backend):
        logits, loss = model.forward(idx, targets)
        model.zero_grad()
        model.backward()

    torch_model = from_minigpt(model)
    t_logits, t_loss = torch_model(torch.from_numpy(idx), torch.from_numpy(targets))
    t_loss.backward()

    tol = TOLERANCE[dtype]
    assert relative(logits, t_logits.detach().numpy()) < tol
    assert abs(float(loss) - t_loss.item()) / abs(t_loss.item()) < tol
    torch_grads = dict(torch_model.named_parameters())
    assert set(torch_grads) == set(model.grads)
    for name, grad in model.grads.items():
        assert relative(grad, torch_grads[name].grad.numpy()) < tol, name

