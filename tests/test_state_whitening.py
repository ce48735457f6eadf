"""The task-token state is whitened before the mask decoder, and image tokens start as BOS."""
import math

import torch

from ntbench.model.allintoken import AllInTokenModel
from ntbench.model.backbone import load_backbone
from ntbench.model.heads import MaskDecoder, StateWhitening


def test_hand_worked_two_dimensional_case():
    # one batch, rate 1: mean (1, 2); centred values +-2 and +-0.5 on the two axes, so the
    # covariance is diag(4, 0.25) and the ZCA transform diag(1/2, 2) (eps 0)
    w = StateWhitening(2, eps=0.0)
    batch = torch.tensor([[3.0, 2.5], [-1.0, 1.5], [3.0, 1.5], [-1.0, 2.5]])
    w.train()(batch)
    torch.testing.assert_close(w.mean, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(w.transform, torch.diag(torch.tensor([0.5, 2.0])), atol=1e-5, rtol=1e-5)
    out = w.eval()(torch.tensor([[3.0, 2.0], [1.0, 2.5]]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), atol=1e-5, rtol=1e-5)


def test_running_statistics_whiten_an_anisotropic_rotated_gaussian():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    scales = torch.tensor([10.0, 3.0, 1.0, 0.3, 0.05, 0.01])  # eigenvalues span 1e6, as in an LLM's states
    shift = torch.randn(6) * 5
    draw = lambda n: (torch.randn(n, 6) * scales) @ q.T + shift  # noqa: E731
    w = StateWhitening(6, momentum=0.01, eps=1e-9).train()
    for _ in range(400):
        w(draw(32))
    with torch.no_grad():
        out = w.eval()(draw(20000))
    assert out.mean(0).abs().max() < 0.1
    torch.testing.assert_close(torch.cov(out.T), torch.eye(6), atol=0.15, rtol=0)
    # the raw input is far from white: its smallest direction is 1e-6 of its largest
    lam = torch.linalg.eigvalsh(torch.cov(draw(20000).T))
    assert lam.min() / lam.max() < 1e-5


def test_eval_mode_does_not_move_the_statistics_and_gradients_flow_through():
    w = StateWhitening(4).train()
    w(torch.randn(16, 4))
    seen, transform = int(w.batches_seen), w.transform.clone()
    w.eval()
    x = torch.randn(8, 4, requires_grad=True)
    w(x).sum().backward()
    assert int(w.batches_seen) == seen and torch.equal(w.transform, transform)
    # d/dx of sum((x - m) T) is the row sums of T^T, the same for every input row
    torch.testing.assert_close(x.grad, transform.sum(1).expand(8, 4))


def test_decoder_whitens_by_default_and_can_be_switched_off():
    assert isinstance(MaskDecoder(16, 12, 2, width=16).whiten, StateWhitening)
    assert isinstance(MaskDecoder(16, 12, 2, width=16, whiten_state=False).whiten, torch.nn.Identity)
    assert "whiten.transform" in MaskDecoder(16, 12, 2, width=16).state_dict()


def test_image_tokens_start_as_the_bos_embedding():
    model = AllInTokenModel(load_backbone("tiny-random"), "frozen")
    embed = model.llm.get_input_embeddings().weight
    bos = embed[model.tokenizer.bos_token_id]
    with torch.no_grad():
        zero = model.projector(torch.zeros(1, model.projector.in_features))[0]
        feats = torch.randn(256, model.projector.in_features)  # unit-variance patch features
        part = model.projector(feats) - zero
    torch.testing.assert_close(zero, bos.float())
    # the image-dependent part is small next to a word embedding (a quarter of its per-entry std)
    assert part.std() < 0.5 * float(embed.std())
    assert part.std() > 0  # and not zero: the projection can still learn what to send
    assert math.isfinite(float(part.std()))
