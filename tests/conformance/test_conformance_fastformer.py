"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) run against every Fastformer class.

The mixin and the config tester come from the source distribution of the *installed* transformers version
(`upstream.load()`: downloaded once with pip, cached outside this repository). When it cannot be fetched,
`test_transformers_common_tests_available` fails with the reason; nothing is skipped silently.

Three test classes, as an in-tree port would have:
- `FastformerModelTest`: the bidirectional encoder and its six heads;
- `FastformerCausalLMTest`: the causal model (`is_decoder=True`): `FastformerModel` and `FastformerForCausalLM`;
- `FastformerForConditionalGenerationTest`: the encoder-decoder.

Every skipped or overridden upstream test says why, next to it.
"""

import tempfile
import unittest

import torch
from transformers.models.auto import modeling_auto

from fastformer import (
    FastformerConfig,
    FastformerForCausalLM,
    FastformerForConditionalGeneration,
    FastformerForMaskedLM,
    FastformerForMultipleChoice,
    FastformerForQuestionAnswering,
    FastformerForSequenceClassification,
    FastformerForTokenClassification,
    FastformerModel,
)


try:
    import upstream

    common, configuration_common = upstream.load()
    UPSTREAM_ERROR = None
except Exception as error:  # reported by test_transformers_common_tests_available, never skipped
    UPSTREAM_ERROR = error


def test_transformers_common_tests_available():
    """The common tests of the installed transformers could be fetched and imported (otherwise none of the
    conformance classes below exist, and this test names the reason)."""
    assert UPSTREAM_ERROR is None, f"transformers' common tests are unavailable: {UPSTREAM_ERROR!r}"


# The `*_MAPPING_NAMES` tables that `ModelTesterMixin` reads to shape inputs and labels (multiple-choice inputs
# expanded, labels built for each head), with Fastformer's entries as an in-tree port would add them.
FASTFORMER_MAPPING_NAMES = {
    "MODEL_MAPPING_NAMES": "FastformerModel",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": "FastformerForSequenceClassification",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": "FastformerForMaskedLM",
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": "FastformerForTokenClassification",
    "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES": "FastformerForQuestionAnswering",
    "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES": "FastformerForMultipleChoice",
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES": "FastformerForCausalLM",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES": "FastformerForConditionalGeneration",
}


def skipped(reason: str):
    """A test that is skipped with `reason` (to replace an upstream test, parametrised ones included)."""

    @unittest.skip(reason)
    def test(self):
        pass

    return test


class RegisteredInAutoTables:
    """Adds Fastformer to the auto tables for the duration of a test class, and removes it afterwards (so that the
    rest of the test session sees the library's tables unchanged)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for table, name in FASTFORMER_MAPPING_NAMES.items():
            getattr(modeling_auto, table)[FastformerConfig.model_type] = name

    @classmethod
    def tearDownClass(cls):
        for table in FASTFORMER_MAPPING_NAMES:
            getattr(modeling_auto, table).pop(FastformerConfig.model_type, None)
        super().tearDownClass()


class FastformerModelTester:
    """Small configs and random inputs for the common tests (the layout of transformers' own model testers)."""

    def __init__(
        self,
        parent,
        batch_size=13,
        seq_length=7,
        is_training=True,
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        max_position_embeddings=64,
        initializer_range=0.02,
        num_labels=3,
        num_choices=4,
        is_decoder=False,
        layer_norm_position="post",
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.num_labels = num_labels
        self.num_choices = num_choices
        self.is_decoder = is_decoder
        self.layer_norm_position = layer_norm_position

    def get_config(self) -> FastformerConfig:
        return FastformerConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            max_position_embeddings=self.max_position_embeddings,
            initializer_range=self.initializer_range,
            num_labels=self.num_labels,
            is_decoder=self.is_decoder,
            layer_norm_position=self.layer_norm_position,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )

    def prepare_config_and_inputs(self):
        input_ids = common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = common.random_attention_mask([self.batch_size, self.seq_length])
        return self.get_config(), input_ids, attention_mask

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, attention_mask = self.prepare_config_and_inputs()
        return config, {"input_ids": input_ids, "attention_mask": attention_mask}


class FastformerSeq2SeqTester(FastformerModelTester):
    """The encoder-decoder. Source and target have the same length (`seq_length`): the mixin builds seq2seq labels
    of shape (batch, seq_length) and reuses the source mask length for the decoder in its sdpa comparisons."""

    def get_config(self) -> FastformerConfig:
        config = super().get_config()
        config.decoder_start_token_id = 1
        config.is_encoder_decoder = True
        return config

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, attention_mask = self.prepare_config_and_inputs()
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size),
            "decoder_attention_mask": common.random_attention_mask([self.batch_size, self.seq_length]),
        }
        return config, inputs


if UPSTREAM_ERROR is None:

    class FastformerConfigTest(unittest.TestCase):
        """`ConfigTester.run_common_tests`: JSON and save/load round trips, `num_labels`, common kwargs."""

        def test_config(self):
            tester = configuration_common.ConfigTester(
                self, config_class=FastformerConfig, hidden_size=37, num_attention_heads=1
            )
            tester.run_common_tests()

    class FastformerCommonTests(RegisteredInAutoTables, common.ModelTesterMixin):
        """The mixin with Fastformer registered in the auto tables."""

    class GenerativeClasses:
        """For the test classes whose models can `generate()`."""

        @unittest.skip(
            "The sdist omits tests/generation/ (the real GenerationTesterMixin), so generate() tests cannot run from "
            "it; generation is tested in tests/test_causal_fastformer.py and tests/test_seq2seq_fastformer.py."
        )
        def test_generation_tester_mixin_inheritance(self):
            pass

    class SingleAttentionImplementation:
        """For the classes without cross-attention: skips the (parametrised) eager-versus-sdpa comparison."""

    for _name in dir(common.ModelTesterMixin):
        if _name.startswith("test_eager_matches_sdpa_inference_"):
            setattr(
                SingleAttentionImplementation,
                _name,
                skipped(
                    "Nothing to compare: `attn_implementation` selects only the encoder-decoder's scaled-dot-product "
                    "cross-attention; the additive self-attention of these classes has one implementation, so eager and "
                    "sdpa run identical code (and the 32 parametrisations x 6 heads took a third of the suite's time). "
                    "The comparison runs in FastformerForConditionalGenerationTest, where the implementations differ."
                ),
            )

    class AlphaBetaAttentions:
        """For the bidirectional classes, whose `attentions` hold one `(batch, heads, 2, seq)` tensor per layer."""

        def test_attention_outputs(self):
            """Upstream's test, with the attention shape Fastformer documents: each layer's attentions are `(batch,
            heads, 2, seq)` (`[:, :, 0]` alpha, `[:, :, 1]` beta: the additive attention's two distributions over the
            sequence) instead of a `seq x seq` map. The mixin reads the expected last two dimensions from the tester's
            `encoder_seq_length` and `key_length`; every other assertion is upstream's."""
            self.model_tester.encoder_seq_length = 2
            self.model_tester.key_length = self.model_tester.seq_length
            super().test_attention_outputs()

        def test_retain_grad_hidden_states_attentions(self):
            """Upstream's test for the hidden states only (the mixin's `has_attentions=False` branch). The returned
            `(batch, heads, 2, seq)` tensor is assembled from alpha and beta after they were used (beta's logits
            depend on the pool of alpha), so it is not in the autograd graph and receives no gradient; routing the
            pools through it would cost an extra pool per layer, for a map that is only ever read."""
            self.has_attentions = False
            super().test_retain_grad_hidden_states_attentions()

    class FastformerModelTest(
        AlphaBetaAttentions, SingleAttentionImplementation, FastformerCommonTests, unittest.TestCase
    ):
        all_model_classes = (
            FastformerModel,
            FastformerForSequenceClassification,
            FastformerForMaskedLM,
            FastformerForTokenClassification,
            FastformerForQuestionAnswering,
            FastformerForMultipleChoice,
        )

        def setUp(self):
            self.model_tester = FastformerModelTester(self)

    class FastformerCausalLMTest(
        SingleAttentionImplementation, GenerativeClasses, FastformerCommonTests, unittest.TestCase
    ):
        all_model_classes = (FastformerModel, FastformerForCausalLM)

        # The causal model returns no attention maps (`attentions` is an empty tuple): each position has its own
        # prefix distributions, which are never materialised. `has_attentions = False` is the mixin's switch for
        # such models (test_attention_outputs is skipped, test_retain_grad_hidden_states_attentions checks only
        # hidden states).
        has_attentions = False

        def setUp(self):
            self.model_tester = FastformerModelTester(self, is_decoder=True)

    class FastformerPreLNCausalLMTest(FastformerCausalLMTest):
        """The causal classes again in the pre-LN layout (`layer_norm_position="pre"`: raw embeddings, a final
        LayerNorm), the layout recommended for language-model training."""

        def setUp(self):
            self.model_tester = FastformerModelTester(self, is_decoder=True, layer_norm_position="pre")

    class FastformerForConditionalGenerationTest(GenerativeClasses, FastformerCommonTests, unittest.TestCase):
        all_model_classes = (FastformerForConditionalGeneration,)
        is_encoder_decoder = True

        def setUp(self):
            self.model_tester = FastformerSeq2SeqTester(self)

        def attention_outputs(self, config, inputs):
            model = FastformerForConditionalGeneration._from_config(config, attn_implementation="eager")
            return model.to(common.torch_device), model(**inputs)

        def test_attention_outputs(self):
            """Replaces upstream's test, which expects `seq x seq` maps from the encoder, the decoder and the
            cross-attention. Here, from the argument and from `config.output_attentions`: the encoder's `(batch, heads,
            2, seq)` alpha/beta per layer; no decoder self-attention maps (the causal decoder's prefix distributions
            are never materialised: an empty tuple); cross-attention maps `(batch, heads, dec_seq, enc_seq)` per
            layer; attentions never returned unless asked for."""
            tester = self.model_tester
            batch, heads, seq = tester.batch_size, tester.num_attention_heads, tester.seq_length
            layers = tester.num_hidden_layers
            config, inputs = tester.prepare_config_and_inputs_for_common()
            with torch.no_grad():
                _, plain = self.attention_outputs(config, inputs)
                _, by_argument = self.attention_outputs(config, {**inputs, "output_attentions": True})
                config.output_attentions = True
                _, by_config = self.attention_outputs(config, inputs)
            self.assertIsNone(plain.encoder_attentions)
            self.assertIsNone(plain.cross_attentions)
            for outputs in (by_argument, by_config):
                self.assertEqual(len(outputs.encoder_attentions), layers)
                self.assertEqual(len(outputs.cross_attentions), layers)
                self.assertFalse(outputs.decoder_attentions)
                for encoder, cross in zip(outputs.encoder_attentions, outputs.cross_attentions):
                    self.assertEqual(tuple(encoder.shape), (batch, heads, 2, seq))
                    self.assertEqual(tuple(cross.shape), (batch, heads, seq, seq))

        def test_retain_grad_hidden_states_attentions(self):
            """Upstream's check (gradients reach the returned hidden states and attention maps) without the decoder's
            self-attention maps, which the causal decoder does not have (see test_attention_outputs), and without the
            encoder's alpha/beta tensor, which is assembled after use and so not in the autograd graph (see
            FastformerModelTest.test_retain_grad_hidden_states_attentions)."""
            config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
            config.output_hidden_states = config.output_attentions = True
            _, outputs = self.attention_outputs(config, inputs)
            returned = {
                "encoder_hidden_states": outputs.encoder_hidden_states[0],
                "decoder_hidden_states": outputs.decoder_hidden_states[0],
                "cross_attentions": outputs.cross_attentions[0],
            }
            for tensor in returned.values():
                tensor.retain_grad()
            outputs[0].flatten()[0].backward()
            for name, tensor in returned.items():
                self.assertIsNotNone(tensor.grad, f"no gradient reaches `{name}`")

        def test_base_model_prefix_loads_base_weights(self):
            """Upstream's test for the encoder only. Upstream expects every child of the base class to sit under
            `base_model_prefix`; the encoder-decoder holds two `FastformerModel`s: the encoder under `fastformer` (the
            prefix, as in the published checkpoints) and the causal, cross-attending decoder under `decoder`, which a
            base-model checkpoint has no weights for. As upstream: a base checkpoint loads every encoder weight."""
            config, _ = self.model_tester.prepare_config_and_inputs_for_common()
            model = FastformerForConditionalGeneration(config)
            prefix = model.base_model_prefix
            encoder = getattr(model, prefix)
            self.assertIs(type(encoder), FastformerModel)
            self.assertIs(model.get_encoder(), encoder)
            base_model, encoder_state = FastformerModel(config), encoder.state_dict()
            expected_keys = {
                f"{prefix}.{key}"
                for key, tensor in base_model.state_dict().items()
                if key in encoder_state and encoder_state[key].shape == tensor.shape
            }
            self.assertTrue(expected_keys)
            with tempfile.TemporaryDirectory() as tmp:
                base_model.save_pretrained(tmp)
                _, info = FastformerForConditionalGeneration.from_pretrained(
                    tmp, output_loading_info=True, ignore_mismatched_sizes=True
                )
            self.assertTrue(info["missing_keys"].isdisjoint(expected_keys), info["missing_keys"] & expected_keys)
