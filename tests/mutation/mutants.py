"""The mutants of `run.py`: plausible one-line bugs, each with the tests that must notice it.

Each entry: `id`, `file` (relative to the repository root), `original` (a snippet that must occur exactly once in
that file), `replacement`, `description` (the bug), `tests` (the pytest arguments to run against it) and, for the
small subset that `--fast` and `tests/test_mutation_subset.py` run, `fast=True`.
"""

MODEL = "fastformer/modeling_fastformer.py"
CONVERTER = "fastformer/convert_official_checkpoint.py"
TOKENIZER = "fastformer/tokenization_fastformer.py"
JOB = "fastformer/classify/run_classification.py"

T_MODEL = "tests/test_modeling_fastformer.py"
T_CAUSAL = "tests/test_causal_fastformer.py"
T_SEQ2SEQ = "tests/test_seq2seq_fastformer.py"

ENCODER_REFERENCE = [T_MODEL, "-k", "attention_equals_official_code or encoder_equals_the_reference"]
CAUSAL_REFERENCE = [T_CAUSAL, "-k", "causal_lm_equals_the_reference"]
SEQ2SEQ_REFERENCE = [T_SEQ2SEQ, "-k", "seq2seq_equals_the_reference or additive_cross_attention_equals"]
INCREMENTAL = [T_CAUSAL, "-k", "incremental_decoding_equals_full_forward and 5-1-True"]
SEQ2SEQ_INCREMENTAL = [T_SEQ2SEQ, "-k", "incremental_decoding"]

MUTANTS = [
    # ----------------------------------------------------------------------------------------- encoder math
    dict(id="enc-no-scale", file=MODEL, fast=True,
         original="        weights = masked_softmax(logits * self.scale, mask, dim=1)",
         replacement="        weights = masked_softmax(logits, mask, dim=1)",
         description="encoder self-attention logits not divided by sqrt(head_dim)",
         tests=[T_MODEL, "-k", "attention_equals_official_code"]),
    dict(id="enc-p-from-query", file=MODEL,
         original="        mixed = key * global_query  # p_i, (batch, seq, hidden)",
         replacement="        mixed = query * global_query  # p_i, (batch, seq, hidden)",
         description="p_i = q_glob * q_i instead of q_glob * k_i (encoder)", tests=ENCODER_REFERENCE),
    dict(id="enc-no-residual-query", file=MODEL,
         original="        output = self.transform(global_key * value) + query  # (batch, seq, hidden)",
         replacement="        output = self.transform(global_key * value)  # (batch, seq, hidden)",
         description="the `+ q` residual of the attention output dropped (encoder)", tests=ENCODER_REFERENCE),
    dict(id="act-hardcoded-gelu", file=MODEL,
         original="        return self.intermediate_act_fn(self.dense(hidden_states))",
         replacement="        return nn.functional.gelu(self.dense(hidden_states))",
         description="the feed-forward ignores config.hidden_act (always GELU)",
         tests=["tests/test_convert_official.py", "-k", "hidden_act"]),
    dict(id="emb-no-layernorm", file=MODEL,
         original="        return self.dropout(self.LayerNorm(embeddings))",
         replacement="        return self.dropout(embeddings)",
         description="embedding LayerNorm skipped", tests=ENCODER_REFERENCE),
    dict(id="layers-all-first", file=MODEL,
         original="            hidden_states = self.layer[depth % len(self.layer)](",
         replacement="            hidden_states = self.layer[0](",
         description="every depth applies layer 0 (unshared weights ignored)", tests=ENCODER_REFERENCE),
    # ------------------------------------------------------------------------------------------------ masks
    dict(id="softmax-mask-ignored", file=MODEL,
         original="        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)",
         replacement="        logits = logits",
         description="masked_softmax ignores its mask (padding gets attention)",
         tests=[T_MODEL, "-k", "padding_does_not_change_real_tokens"]),
    dict(id="model-mask-dropped", file=MODEL,
         original="        mask = None if attention_mask is None else attention_mask[:, past_length:].bool().unsqueeze(-1)",
         replacement="        mask = None",
         description="the model drops attention_mask before the layers",
         tests=[T_MODEL, "-k", "batch_equals_rows"]),
    dict(id="pool-mean-over-padding", file=MODEL,
         original="            return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)",
         replacement="            return hidden_states.mean(dim=1)",
         description='the "mean" pooler averages padding too', tests=[T_MODEL, "-k", "poolers_equal"]),
    dict(id="pool-attention-unmasked", file=MODEL,
         original="        mask = None if attention_mask is None else attention_mask.bool().unsqueeze(-1)",
         replacement="        mask = None",
         description='the "attention" pooler ignores padding', tests=[T_MODEL, "-k", "poolers_equal"]),
    dict(id="pool-first-is-last", file=MODEL,
         original="            return hidden_states[:, 0]",
         replacement="            return hidden_states[:, -1]",
         description='the "first" pooler takes the last position', tests=[T_MODEL, "-k", "poolers_equal and first"]),
    # ------------------------------------------------------------------------------------------- positions
    dict(id="pos-left-padding-shifts", file=MODEL,
         original="            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -seq:]",
         replacement="            position_ids = torch.arange(past_length, past_length + seq, device=device).unsqueeze(0)",
         description="causal positions count left padding", tests=CAUSAL_REFERENCE),
    dict(id="pos-ignore-past", file=MODEL,
         original="            position_ids = torch.arange(past_length, past_length + seq, device=device).unsqueeze(0)",
         replacement="            position_ids = torch.arange(0, seq, device=device).unsqueeze(0)",
         description="decoding restarts positions at 0 after the cache", tests=INCREMENTAL),
    dict(id="pos-not-added", file=MODEL,
         original="            embeddings = embeddings + self.position_embeddings(position_ids)  # (batch or 1, seq, hidden)",
         replacement="            embeddings = embeddings  # (batch or 1, seq, hidden)",
         description="position embeddings never added", tests=ENCODER_REFERENCE),
    # ------------------------------------------------------------------------------------------ causal scan
    dict(id="scan-not-causal-in-chunk", file=MODEL,
         original="        causal = torch.ones(length, length, dtype=torch.bool, device=a.device).tril()  # [t, j]: j <= t",
         replacement="        causal = torch.ones(length, length, dtype=torch.bool, device=a.device)  # [t, j]: j <= t",
         description="the chunked scan lets later tokens of a chunk into a prefix", tests=CAUSAL_REFERENCE),
    dict(id="scan-merge-swapped", file=MODEL,
         original="    return m_new, old * z + new * z_other, old.unsqueeze(-1) * s + new.unsqueeze(-1) * s_other",
         replacement="    return m_new, new * z + old * z_other, old.unsqueeze(-1) * s + new.unsqueeze(-1) * s_other",
         description="online-softmax merge rescales the normalisers the wrong way round",
         tests=[T_CAUSAL, "-k", "causal_pool_equals_naive"]),
    dict(id="scan-keep-ignored", file=MODEL,
         original="        weights = torch.exp(exponent) * keep.view(batch, 1, chunks, 1, length)",
         replacement="        weights = torch.exp(exponent)",
         description="the scan gives padding weight inside a chunk", tests=CAUSAL_REFERENCE),
    # ------------------------------------------------------------------------------------------------ cache
    dict(id="cache-never-read", file=MODEL,
         original="    state = None if cache is None else cache.read_state(layer_idx, slot)",
         replacement="    state = None",
         description="decoding from the cache never reads the stored state", tests=INCREMENTAL),
    dict(id="cache-shared-slot", file=MODEL,
         original="                hidden_states, mask, encoder_hidden_states, encoder_mask, cache=cache, layer_idx=depth\n",
         replacement="                hidden_states, mask, encoder_hidden_states, encoder_mask, cache=cache,"
                     " layer_idx=depth % len(self.layer)\n",
         description="layers with shared weights share one cache slot", tests=INCREMENTAL),
    dict(id="cache-length-not-advanced", file=MODEL,
         original="        self._seen_tokens += num_tokens",
         replacement="        self._seen_tokens += 0",
         description="the cache does not count the tokens it has seen", tests=INCREMENTAL),
    # -------------------------------------------------------------------------------------- cross-attention
    dict(id="cross-key-logits-query-weights", file=MODEL,
         original="        return self.key_att.weight if isinstance(self.key_att, nn.Linear) else self.key_att.dense_weight()",
         replacement="        return self.query_att.weight if isinstance(self.query_att, nn.Linear) else self.query_att.dense_weight()",
         description="additive cross-attention key logits computed with the query weights",
         tests=[T_SEQ2SEQ, "-k", "additive_cross_attention_equals"]),
    dict(id="cross-additive-ignores-decoder-padding", file=MODEL,
         original="                keep=None if mask is None else mask.squeeze(-1), pool_cache=pool_cache,",
         replacement="                keep=None, pool_cache=pool_cache,",
         description="the additive cross-attention's query pool ignores decoder padding", tests=SEQ2SEQ_REFERENCE),
    dict(id="cross-additive-no-global-query", file=MODEL,
         original="        return self.transform(global_query * pooled * value) + query, beta",
         replacement="        return self.transform(pooled * value) + query, beta",
         description="K_t = sum_j beta_tj k_j without the G^q_t factor", tests=SEQ2SEQ_REFERENCE),
    dict(id="cross-sdpa-mask-ignored", file=MODEL,
         original="            bias = bias.masked_fill(~encoder_mask.bool(), torch.finfo(query.dtype).min)[:, None, None, :]",
         replacement="            bias = bias[:, None, None, :]",
         description="scaled-dot-product cross-attention attends to source padding",
         tests=[T_SEQ2SEQ, "-k", "scaled_dot_product_cross_attention_equals"]),
    dict(id="seq2seq-source-mask-dropped", file=MODEL,
         original="            encoder_attention_mask=attention_mask,",
         replacement="            encoder_attention_mask=None,",
         description="the decoder's cross-attention is not given the source padding mask",
         tests=[T_SEQ2SEQ, "-k", "source_padding_does_not_change"]),
    # ---------------------------------------------------------------------------------- returned attentions
    dict(id="attentions-alpha-beta-swapped", file=MODEL, fast=True,
         original="torch.stack((alpha, beta), dim=-1)",
         replacement="torch.stack((beta, alpha), dim=-1)",
         description="returned attentions hold beta at [:, :, 0] and alpha at [:, :, 1]",
         tests=[T_MODEL, "-k", "returned_attentions_are_the_reference and dense"]),
    # -------------------------------------------------------------------------------------------- converter
    dict(id="convert-ignores-hidden-act", file=CONVERTER, fast=True,
         original='    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",',
         replacement='    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",',
         description="the converter drops fastformer.json's hidden_act",
         tests=["tests/test_convert_official.py", "-k", "hidden_act"]),
    dict(id="convert-ignores-layer-norm-eps", file=CONVERTER,
         original='    "hidden_dropout_prob", "max_position_embeddings", "layer_norm_eps", "initializer_range",',
         replacement='    "hidden_dropout_prob", "max_position_embeddings", "initializer_range",',
         description="the converter drops fastformer.json's layer_norm_eps",
         tests=["tests/test_convert_official.py", "-k", "hidden_act"]),
    # -------------------------------------------------------------------------------------------- tokenizer
    dict(id="tok-cased", file=TOKENIZER,
         original="strip_accents=do_lower_case, lowercase=do_lower_case",
         replacement="strip_accents=do_lower_case, lowercase=False",
         description="the uncased tokenizer does not lower-case",
         tests=["tests/test_tokenization_fastformer.py", "-k", "round_trip_of_a_text"]),
    dict(id="tok-no-length-limit", file=TOKENIZER,
         original='        kwargs.setdefault("model_max_length", DEFAULT_MODEL_MAX_LENGTH)',
         replacement="        pass",
         description="a fresh tokenizer has no model_max_length (truncation=True does not cut)",
         tests=["tests/test_tokenization_fastformer.py", "-k", "default_length_limit"]),
    # -------------------------------------------------------------------------------------------- main job
    dict(id="job-label-set-unchecked", file=JOB,
         original="        if key not in index:",
         replacement="        if False:",
         description="labels outside the declared set are not refused with the one-line error",
         tests=["tests/test_run_classification.py", "-k", "labels_outside_the_declared_set"]),
    dict(id="job-metrics-wrong-axis", file=JOB,
         original="        predictions = np.argmax(prediction.predictions, axis=-1)",
         replacement="        predictions = np.argmax(prediction.predictions, axis=0)",
         description="accuracy computed from the argmax over the batch instead of the classes",
         tests=["tests/test_run_classification.py", "-k", "end_to_end_on_a_local_csv"]),
]
