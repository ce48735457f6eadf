"""Task examples and batch assembly: answer-only labels, task-token positions, image tokens."""
import numpy as np
import torch

from ntbench.data.schema import ObjectAnnotation, Sample
from ntbench.model.allintoken import AllInTokenModel
from ntbench.model.backbone import load_backbone
from ntbench.model.batching import Item, collate
from ntbench.model.tasks import TASKS


def sample():
    rle = {"size": [4, 4], "counts": "0g0"}  # placeholder: masks come from Item.masks here
    objs = [ObjectAnnotation("circle", ["the red circle"], rle, [0, 0, 1, 1]),
            ObjectAnnotation("square", ["the blue square"], rle, [0, 0, 1, 1])]
    return Sample("s1", "x.png", 4, 4, "a red circle and a blue square.", "Which object is bigger?",
                  "The square <OBJ-2> is bigger than the circle <OBJ-1>.", [0, 1], objs,
                  t2i_prompt="Draw a red circle.")


def test_reasoning_tags_renumbered_in_order_of_appearance():
    ex = TASKS.get("reasoning")().build(sample(), np.random.default_rng(0))
    assert ex.answer == "The square <OBJ-1> is bigger than the circle <OBJ-2>."
    assert ex.target_objects == [1, 0]


def test_collate_labels_positions_and_image_flags():
    model = AllInTokenModel(load_backbone("tiny-random"), "frozen")
    tok = model.tokenizer
    rng = np.random.default_rng(0)
    masks = torch.stack([torch.zeros(4, 4, dtype=torch.uint8), torch.ones(4, 4, dtype=torch.uint8)])
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    items = [Item(TASKS.get(t)().build(sample(), rng), image, masks, "s1") for t in ("reasoning", "t2i")]
    batch = collate(items, tok)
    ids, labels = batch["input_ids"], batch["labels"]
    prompt_len = 1 + len(tok("Which object is bigger?", add_special_tokens=False).input_ids)
    assert (labels[0, :prompt_len] == -100).all()             # no loss on the prompt
    answer = labels[0][labels[0] != -100].tolist()
    assert answer[-1] == tok.eos_token_id and tok.convert_tokens_to_ids("<OBJ-1>") in answer
    # the k-th seg target sits on the k-th <OBJ-k> token and carries that object's mask
    assert [tok.convert_ids_to_tokens(int(ids[b, t])) for b, t in zip(batch["seg_b"], batch["seg_t"])] == ["<OBJ-1>", "<OBJ-2>"]
    assert torch.equal(batch["seg_masks"][0], masks[1]) and torch.equal(batch["seg_masks"][1], masks[0])
    assert batch["uses_image"].tolist() == [True, False]      # text-to-image carries no image tokens
    assert tok.convert_ids_to_tokens(int(ids[1, batch["gen_t"][0]])) == "<GEN>"
    # padding is neither attended nor learned
    assert (labels[batch["text_mask"] == 0] == -100).all()


def test_new_token_rows_are_the_only_trainable_embeddings():
    model = AllInTokenModel(load_backbone("tiny-random"), "frozen")
    trainable = {id(p) for p in model.trainable_parameters()}
    assert id(model.llm.get_input_embeddings().weight) not in trainable
    assert id(model.new_embed) in trainable and id(model.new_out) in trainable
    ids = torch.tensor([[model.base_vocab - 1, model.base_vocab, model.base_vocab + 2]])
    emb = model.embed_text(ids)
    assert torch.equal(emb[0, 1], model.new_embed[0]) and torch.equal(emb[0, 2], model.new_embed[2])
    assert torch.equal(emb[0, 0], model.llm.get_input_embeddings().weight[model.base_vocab - 1])


def test_pixel_refiner_is_a_residual_correction_that_learns():
    """With its output convolution at zero the refiner leaves the decoder's mask unchanged; its
    parameters receive gradient from the mask loss."""
    import torch

    from ntbench.model.heads import MaskDecoder, dice_loss

    torch.manual_seed(0)
    dec = MaskDecoder(llm_width=16, vision_width=12, n_layers=2, width=16, pixel_refiner=True)
    state, feats = torch.randn(3, 16), [torch.randn(3, 16, 12) for _ in range(2)]
    pixels, target = torch.randn(3, 3, 24, 24), (torch.rand(3, 24, 24) > 0.5).float()
    out = dec(state, feats, (24, 24), pixels)
    assert out.shape == (3, 24, 24)
    dice_loss(out, target).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.refiner.parameters())
    with torch.no_grad():
        dec.refiner.out.weight.zero_()
        dec.refiner.out.bias.zero_()
        with_refiner = dec(state, feats, (24, 24), pixels)
        refiner, dec.refiner = dec.refiner, None
        without = dec(state, feats, (24, 24), pixels)
    assert torch.allclose(with_refiner, without)
