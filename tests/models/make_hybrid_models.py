"""Makes the tiny trained hybrid (gated DeltaNet + gated attention) test checkpoints under tests/models/:
  tiny-qwen3_5moe-code  Qwen3_5MoeForConditionalGeneration (text_config, model.language_model.*, a tiny vision
                        tower, one MTP layer added as the released checkpoints carry it), experts packed as released
  tiny-qwen3next-code   Qwen3NextForCausalLM (fused in_proj_qkvz / in_proj_ba interleaved per key head, per-expert
                        tensors): written as save_pretrained writes it, which is the released layout (transformers
                        5.25 holds the experts packed in memory and saves them per expert), so nothing is rewritten
Run by hand (not in CI), from the repository root, with a Python that has torch, transformers, safetensors, tokenizers:
  python tests/models/make_hybrid_models.py qwen3_5_moe|qwen3_next [steps]
PQ_TORCH_THREADS sets torch's threads (default 2; 1 on a shared machine). Made so far: tiny-qwen3_5moe-code with 200
steps; tiny-qwen3next-code with 400 steps (transformers 5.25.0, torch 2.15 CPU, 1 thread, 4 min; loss 9.02 -> 4.18,
eval NLL 4.9655).
Training: a few hundred CPU steps on the Python sources of the standard library (/usr/lib/python3.11), tokenised
with the 8192-token byte-level BPE of shared/models/tiny-llama-code; eval windows come from files never trained on.
tokens.safetensors holds calib [128, 512], eval [64, 512] (I32), ref_logits [2, 16, 8192] (F32: eval[0], eval[1],
positions 0..15, fp32 arithmetic on the bf16 weights), ref_nll (F32 scalar: mean NLL of positions 0..510 of every
eval window, the same forward). For tiny-qwen3_5moe-code, tests/models/mtp_reference.py then adds mtp_ref_logits and
mtp_ref_nll (the MTP head's); rerun it after remaking the model."""
import glob, json, os, random, sys, time
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

arch = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 400
root = os.path.dirname(os.path.abspath(__file__))
tok_src = os.path.join(root, "../../../shared/models/tiny-llama-code/tokenizer.json")
if not os.path.exists(tok_src):
    tok_src = "/work/shared/models/tiny-llama-code/tokenizer.json"
torch.manual_seed(0)
random.seed(0)
torch.set_num_threads(int(os.environ.get("PQ_TORCH_THREADS", "2")))  # PQ_TORCH_THREADS=1 on a shared machine

text_common = dict(vocab_size=8192, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                   head_dim=32, linear_conv_kernel_dim=4, linear_key_head_dim=32, linear_value_head_dim=32,
                   linear_num_key_heads=2, linear_num_value_heads=4, moe_intermediate_size=64,
                   shared_expert_intermediate_size=128, num_experts=8, num_experts_per_tok=2, rms_norm_eps=1e-6,
                   max_position_embeddings=4096, tie_word_embeddings=False,
                   layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"])
if arch == "qwen3_5_moe":
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration
    out = os.path.join(root, "tiny-qwen3_5moe-code")
    text = dict(text_common, mtp_num_hidden_layers=1,
                rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.25,
                                     mrope_section=[2, 1, 1], mrope_interleaved=True))
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4, out_hidden_size=128,
                  num_position_embeddings=16, spatial_merge_size=2, temporal_patch_size=2)
    config = Qwen3_5MoeConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)
    model = Qwen3_5MoeForConditionalGeneration(config)
elif arch == "qwen3_next":
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM
    out = os.path.join(root, "tiny-qwen3next-code")
    config = Qwen3NextConfig(**text_common, decoder_sparse_step=1, norm_topk_prob=True,
                             rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.25))
    model = Qwen3NextForCausalLM(config)
else:
    sys.exit("usage: make_hybrid_models.py qwen3_5_moe|qwen3_next [steps]")

# ---- data: stdlib sources, files split into train / held out ----
tok = Tokenizer.from_file(tok_src)
files = sorted(f for f in glob.glob("/usr/lib/python3.11/**/*.py", recursive=True) if "test" not in f)
random.Random(1).shuffle(files)
held, train_files = files[:150], files[150:1500]
def stream(fs, limit):
    ids = []
    for f in fs:
        try:
            s = open(f, encoding="utf-8").read()
        except Exception:
            continue
        ids += tok.encode(s).ids
        if len(ids) >= limit:
            break
    return torch.tensor(ids[:limit], dtype=torch.int32)
L = 512
train = stream(train_files, 3_000_000)
evals = stream(held, 64 * L).view(64, L)
starts = torch.randperm(len(train) - L)[:128]
calib = torch.stack([train[s:s + L] for s in starts.tolist()])
print("train tokens", len(train), "eval", evals.shape)

# ---- train briefly ----
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
model.train()
T, B = 128, 8
t0 = time.time()
for step in range(steps):
    idx = torch.randint(0, len(train) - T - 1, (B,))
    x = torch.stack([train[i:i + T] for i in idx.tolist()]).long()
    loss = model(input_ids=x, labels=x).loss
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    if step % 25 == 0 or step == steps - 1:
        print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)

# ---- save bf16 in the Hugging Face layout ----
model.eval()
model = model.to(torch.bfloat16)
os.makedirs(out, exist_ok=True)
model.save_pretrained(out, max_shard_size="4MB")
import shutil
shutil.copy(tok_src, os.path.join(out, "tokenizer.json"))

index_path = os.path.join(out, "model.safetensors.index.json")
def all_tensors():
    if os.path.exists(index_path):
        idx = json.load(open(index_path))
        return {n: f for n, f in idx["weight_map"].items()}
    return {n: "model.safetensors" for n in load_file(os.path.join(out, "model.safetensors"))}

if arch == "qwen3_5_moe":
    # As released: routed experts packed (gate_up_proj [E, 2I, H], down_proj [E, H, I]); an MTP layer.
    wm = all_tensors()
    shards = {f: load_file(os.path.join(out, f)) for f in set(wm.values())}
    flat = {}
    for f, d in shards.items():
        flat.update(d)
    E = config.text_config.num_experts
    packed = {}
    for n in list(flat):
        if ".mlp.experts.0.gate_proj.weight" in n:
            pre = n[: n.index(".mlp.experts.0.")] + ".mlp.experts."
            g = [flat.pop(f"{pre}{e}.gate_proj.weight") for e in range(E)]
            u = [flat.pop(f"{pre}{e}.up_proj.weight") for e in range(E)]
            d = [flat.pop(f"{pre}{e}.down_proj.weight") for e in range(E)]
            packed[pre + "gate_up_proj"] = torch.stack([torch.cat([a, b], 0) for a, b in zip(g, u)]).contiguous()
            packed[pre + "down_proj"] = torch.stack(d).contiguous()
    flat.update(packed)
    # MTP: fc over [norm(embedding), norm(hidden)], one full-attention MoE layer, a final norm (weights derived from
    # the trained last layer; pq only has to read past them).
    last = "model.language_model.layers.3."
    H = config.text_config.hidden_size
    mtp = {k.replace(last, "mtp.layers.0."): v.clone() for k, v in flat.items() if k.startswith(last)}
    mtp["mtp.fc.weight"] = (torch.randn(H, 2 * H) * 0.02).to(torch.bfloat16)
    for n in ("mtp.pre_fc_norm_embedding.weight", "mtp.pre_fc_norm_hidden.weight", "mtp.norm.weight"):
        mtp[n] = torch.zeros(H, dtype=torch.bfloat16)
    flat.update(mtp)
    for f in set(wm.values()):
        os.remove(os.path.join(out, f))
    # re-shard: ~4 MB per file, names sorted
    names = sorted(flat)
    shard, size, groups = {}, 0, []
    for n in names:
        b = flat[n].numel() * 2
        if shard and size + b > 4_000_000:
            groups.append(shard)
            shard, size = {}, 0
        shard[n] = flat[n]
        size += b
    groups.append(shard)
    weight_map = {}
    for i, g in enumerate(groups):
        fn = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file(g, os.path.join(out, fn), metadata={"format": "pt"})
        for n in g:
            weight_map[n] = fn
    json.dump({"metadata": {"total_size": sum(v.numel() * 2 for v in flat.values())}, "weight_map": weight_map},
              open(index_path, "w"), indent=2, sort_keys=True)

# ---- references: fp32 arithmetic on the bf16 weights ----
model = model.float()
with torch.no_grad():
    ref = model(input_ids=evals[:2, :16].long()).logits.float().contiguous()
    nll_sum, n = 0.0, 0
    for s in range(0, 64, 8):
        x = evals[s:s + 8].long()
        lg = model(input_ids=x).logits.float()
        lp = torch.log_softmax(lg[:, :-1], -1)
        nll_sum += -lp.gather(-1, x[:, 1:, None]).sum().item()
        n += x[:, 1:].numel()
nll = nll_sum / n
print(f"eval NLL {nll:.5f}")
save_file({"calib": calib.contiguous(), "eval": evals.contiguous(), "ref_logits": ref,
           "ref_nll": torch.tensor([nll], dtype=torch.float32)}, os.path.join(out, "tokens.safetensors"))
print("wrote", out)
