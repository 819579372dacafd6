"""The FSDP and DeepSpeed launch configs in examples/accelerate/ (documented, not run here: no GPU, and accelerate
applies neither on CPU) are configs that `accelerate launch --config_file` accepts, and name classes that exist. The
model's own FSDP2/TP plans, the Trainer and DeepSpeed ZeRO-2 run on 2 gloo processes in tests/test_distributed.py."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

from fastformer import modeling_fastformer


CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "accelerate"


@pytest.mark.parametrize("name, distributed_type", [("fsdp.yaml", "FSDP"), ("deepspeed_zero2.yaml", "DEEPSPEED")])
def test_launch_config_is_accepted_by_accelerate(name, distributed_type):
    config = ClusterConfig.from_yaml_file(CONFIGS / name)  # raises on unknown keys
    assert str(config.distributed_type).split(".")[-1] == distributed_type
    assert config.num_processes == 8 and not config.use_cpu
    if distributed_type == "FSDP":
        wrapped = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
        assert hasattr(modeling_fastformer, wrapped)
        assert wrapped in modeling_fastformer.FastformerPreTrainedModel._no_split_modules
    else:
        assert config.deepspeed_config["zero_stage"] == 2
