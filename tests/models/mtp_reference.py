"""Reference logits and eval NLL of the multi-token-prediction (MTP) head of tests/models/tiny-qwen3_5moe-code,
added to its tokens.safetensors (the model's weights and the existing tensors are left as they are).

The head, as vLLM runs it for speculative decoding (vllm/model_executor/models/qwen3_5_mtp.py, Qwen3_5MultiTokenPredictor,
fed by the EAGLE proposer), at row t of a sequence:
  h_t  = the main model's output at position t, AFTER its final norm (vLLM's Qwen3NextModel.forward returns
         norm(hidden, residual), and compute_logits applies lm_head alone)
  e    = embed_tokens(token_{t+1})                     (the main model's embedding; the proposer shifts the ids by one)
  x_t  = mtp.fc( concat[ pre_fc_norm_embedding(e), pre_fc_norm_hidden(h_t) ] )   (embedding first, then hidden)
  y    = mtp.layers.0(x)   one full-attention decoder layer (gated attention, q/k norm, partial rotary at position t,
                           causal over the rows 0..t of its own inputs; MoE with the sigmoid-gated shared expert)
  logits_t = lm_head( mtp.norm(y_t) )                  predicts token_{t+2}
All RMSNorms are (1 + w) (Qwen3_5MoeRMSNorm). The main model is transformers' Qwen3_5MoeForConditionalGeneration
(mtp.* are not part of it); the MTP layer is transformers' own Qwen3_5MoeDecoderLayer (a full_attention layer) with
the mtp.layers.0.* weights (experts packed as stored), the norms Qwen3_5MoeRMSNorm, fc a bias-free Linear [H, 2H].
fp32 arithmetic on the bf16 weights with bf16-rounded rotary frequencies, as make_hybrid_models.py computes ref_logits
(checked: the main model's logits here equal ref_logits to fp32 noise before anything is written).

Writes into tokens.safetensors (every existing tensor is checked byte-identical afterwards):
  mtp_ref_logits [2, 15, vocab] F32  eval[0] and eval[1], rows t = 0..14: from h_t and token t+1, predicting t+2
  mtp_ref_nll    [1] F32 (as ref_nll) mean NLL of token t+2 over rows t = 0..509 of all 64 eval windows of 512
  mtp_ref_window_nll [64] F32  the same mean per eval window (a test may check a few windows instead of all 64)
Run from the repository root: /work/venv/bin/python tests/models/mtp_reference.py (PQ_TORCH_THREADS, default 1)."""
import copy, os
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import Qwen3_5MoeForConditionalGeneration
from transformers.models.qwen3_5_moe.modeling_qwen3_5_moe import Qwen3_5MoeDecoderLayer, Qwen3_5MoeRMSNorm

torch.set_num_threads(int(os.environ.get("PQ_TORCH_THREADS", "1")))
root = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(root, "tiny-qwen3_5moe-code")
tokens_path = os.path.join(out, "tokens.safetensors")

# .to(bfloat16) also rounds the rotary inverse frequencies (a buffer from_pretrained computes in fp32) to bf16, as the
# model make_hybrid_models.py computed ref_logits with had them (and pq's rope_frequencies for a bf16 checkpoint).
model = Qwen3_5MoeForConditionalGeneration.from_pretrained(out, dtype=torch.bfloat16).to(torch.bfloat16).float().eval()
text = model.model.language_model
cfg = model.config.text_config
H = cfg.hidden_size

# ---- the MTP head from the stored mtp.* tensors ----
stored = {}
for f in sorted(set(__import__("json").load(open(os.path.join(out, "model.safetensors.index.json")))["weight_map"].values())):
    stored.update({k: v for k, v in load_file(os.path.join(out, f)).items() if k.startswith("mtp.")})
assert cfg.mtp_num_hidden_layers == 1
layer_cfg = copy.deepcopy(cfg)
layer_cfg.layer_types = ["full_attention"]
layer_cfg._attn_implementation = "eager"
layer = Qwen3_5MoeDecoderLayer(layer_cfg, 0)
layer.load_state_dict({k[len("mtp.layers.0."):]: v.float() for k, v in stored.items() if k.startswith("mtp.layers.0.")},
                      strict=True)
layer.eval()
def norm(name):
    n = Qwen3_5MoeRMSNorm(H, eps=cfg.rms_norm_eps)
    n.load_state_dict({"weight": stored[name].float()})
    return n
norm_emb, norm_hidden, norm_out = (norm(f"mtp.{n}.weight") for n in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"))
fc = torch.nn.Linear(2 * H, H, bias=False)
fc.load_state_dict({"weight": stored["mtp.fc.weight"].float()})
assert set(stored) == {f"mtp.layers.0.{k}" for k in layer.state_dict()} | {
    "mtp.fc.weight", "mtp.pre_fc_norm_embedding.weight", "mtp.pre_fc_norm_hidden.weight", "mtp.norm.weight"}


def mtp_logits(ids):
    """ids [B, L] -> MTP logits [B, L-2, vocab]: row t from h_t (after the final norm) and token t+1, predicting t+2."""
    h = text(input_ids=ids).last_hidden_state            # [B, L, H], after model.language_model.norm
    B, L = ids.shape
    n = L - 2
    e = text.embed_tokens(ids[:, 1:n + 1])
    x = fc(torch.cat([norm_emb(e), norm_hidden(h[:, :n])], dim=-1))
    pos = torch.arange(n)[None].expand(B, -1)
    rope = text.rotary_emb(x, pos)                       # positions t (the hidden state's), text-only mrope = rope
    mask = torch.full((n, n), float("-inf")).triu(1)[None, None].expand(B, 1, n, n)
    y = layer(x, position_embeddings=rope, attention_mask=mask, position_ids=pos)
    return model.lm_head(norm_out(y)), h


evals = safe_open(tokens_path, "pt").get_tensor("eval")
with torch.no_grad():
    ref_logits = safe_open(tokens_path, "pt").get_tensor("ref_logits")
    lg, h = mtp_logits(evals[:2, :17].long())              # rows 0..14 need tokens up to 16
    main = model.lm_head(h[:, :16])
    main_diff = (main - ref_logits).abs().max().item()
    print("main-model logits from the final hidden states vs ref_logits: max |diff|", main_diff)
    assert main_diff < 1e-4, "the main model does not reproduce ref_logits"
    mtp_ref_logits = lg[:, :15].contiguous()
    nll_sum, count, windows = 0.0, 0, []
    for s in range(0, evals.shape[0], 8):
        x = evals[s:s + 8].long()
        lgs, _ = mtp_logits(x)                            # rows 0..509 predict tokens 2..511
        lp = torch.log_softmax(lgs, -1)
        nll = -lp.gather(-1, x[:, 2:, None])[..., 0]
        nll_sum += nll.sum().item()
        count += x[:, 2:].numel()
        windows.append(nll.mean(dim=1))
mtp_nll = nll_sum / count
print(f"MTP eval NLL {mtp_nll:.5f} over {count} predictions")

# ---- store, keeping every existing tensor byte for byte ----
before = {}
with safe_open(tokens_path, "np") as f:
    for k in f.keys():
        before[k] = f.get_tensor(k)
tensors = {k: v for k, v in load_file(tokens_path).items() if not k.startswith("mtp_")}
tensors["mtp_ref_logits"] = mtp_ref_logits.float()
tensors["mtp_ref_nll"] = torch.tensor([mtp_nll], dtype=torch.float32)
tensors["mtp_ref_window_nll"] = torch.cat(windows).float().contiguous()
save_file(tensors, tokens_path)
with safe_open(tokens_path, "np") as f:
    for k, v in before.items():
        if k.startswith("mtp_"):
            continue
        got = f.get_tensor(k)
        assert got.dtype == v.dtype and got.shape == v.shape and got.tobytes() == v.tobytes(), k
print("wrote mtp_ref_logits", tuple(mtp_ref_logits.shape), ", mtp_ref_nll and mtp_ref_window_nll to", tokens_path, "(existing tensors unchanged)")
