"""Ablations of Fastformer for the benchmarks (not options of the library).

`uniform_pooling(model)`: every additive attention's pooling logits (`w_q . q_i` of the global query's weights alpha,
`w_k . p_i` of the global key's weights beta, in self-attention and additive cross-attention) are replaced by zeros,
so alpha and beta become uniform over the tokens each pool covers: the unmasked tokens of the sequence (encoder), of
each document (packed rows), or of the prefix (causal pools, `G_t` = the running mean of `x_1..x_t`). Everything
else, the element-wise products and the transform included, is unchanged; the logit layers' weights get no gradient.

`uniform_pooling_for_new_models()`: the same for every Fastformer model built inside a `with` block (for a job that
builds its own model, e.g. `fastformer-classify`); `python benchmarks/ablations.py uniform -- JOB ARGS` runs the main
job that way.
"""

import argparse
import contextlib
import sys

import torch

from fastformer.modeling_fastformer import FastformerAdditiveProjections, FastformerPreTrainedModel


def _uniform_logits(module, inputs, output):
    """Forward hook: the logits replaced by zeros (same shape, dtype and device)."""
    return torch.zeros_like(output)


def uniform_pooling(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with uniform pooling weights in every additive attention (see the module docstring). Refuses a model
    without any additive attention, so that an ablation never silently does nothing."""
    attentions = [module for module in model.modules() if isinstance(module, FastformerAdditiveProjections)]
    if not attentions:
        raise ValueError(f"uniform_pooling: {type(model).__name__} has no Fastformer additive attention to ablate")
    for attention in attentions:
        attention.query_att.register_forward_hook(_uniform_logits)
        attention.key_att.register_forward_hook(_uniform_logits)
    return model


@contextlib.contextmanager
def uniform_pooling_for_new_models():
    """Inside the block, every `FastformerPreTrainedModel` gets `uniform_pooling` at the end of its construction
    (`post_init`, which `from_pretrained` runs too)."""
    original = FastformerPreTrainedModel.post_init

    def post_init(self):
        original(self)
        uniform_pooling(self)

    FastformerPreTrainedModel.post_init = post_init
    try:
        yield
    finally:
        FastformerPreTrainedModel.post_init = original


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description="Run the main job (fastformer-classify) under an ablation.")
    parser.add_argument("ablation", choices=["uniform"])
    parser.add_argument("job_args", nargs=argparse.REMAINDER, help="-- then fastformer-classify's arguments")
    args = parser.parse_args(argv)
    job_args = args.job_args[1:] if args.job_args[:1] == ["--"] else args.job_args
    from fastformer.classify.run_classification import cli

    with uniform_pooling_for_new_models():
        sys.argv = ["fastformer-classify", *job_args]
        return cli()


if __name__ == "__main__":
    main()
