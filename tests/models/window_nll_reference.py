"""Per-window reference eval NLLs of the tiny hybrid test checkpoints, added to their tokens.safetensors (the weights and
every existing tensor are left as they are, checked byte for byte), so that a test can check pq's NLL on a few windows
instead of all 64 (the whole split costs minutes under the sanitizers):
  ref_window_nll [64] F32  mean NLL of positions 0..510 of eval window s (the forward of make_hybrid_models.py: fp32
                           arithmetic on the bf16 weights); their mean is ref_nll (checked to 1e-5 before writing)
Run from the repository root: /work/venv/bin/python tests/models/window_nll_reference.py (PQ_TORCH_THREADS, default 1).
The MTP head's per-window NLLs (mtp_ref_window_nll) come from tests/models/mtp_reference.py."""
import os
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

torch.set_num_threads(int(os.environ.get("PQ_TORCH_THREADS", "1")))
root = os.path.dirname(os.path.abspath(__file__))


def window_nll(model, evals):
    out = []
    with torch.no_grad():
        for s in range(0, evals.shape[0], 8):
            x = evals[s:s + 8].long()
            lp = torch.log_softmax(model(input_ids=x).logits.float()[:, :-1], -1)
            out.append(-lp.gather(-1, x[:, 1:, None])[..., 0].mean(dim=1))
    return torch.cat(out)


def add(dir_name, cls):
    out = os.path.join(root, dir_name)
    path = os.path.join(out, "tokens.safetensors")
    # as mtp_reference.py: .to(bfloat16) also rounds the rotary inverse frequencies as make_hybrid_models.py had them
    model = cls.from_pretrained(out, dtype=torch.bfloat16).to(torch.bfloat16).float().eval()
    with safe_open(path, "pt") as f:
        evals, ref_logits, ref_nll = f.get_tensor("eval"), f.get_tensor("ref_logits"), f.get_tensor("ref_nll")
    with torch.no_grad():
        diff = (model(input_ids=evals[:2, :16].long()).logits.float() - ref_logits).abs().max().item()
    assert diff < 1e-4, f"{dir_name}: the model does not reproduce ref_logits ({diff})"
    w = window_nll(model, evals)
    rel = abs(w.double().mean().item() - ref_nll.item()) / ref_nll.item()
    print(f"{dir_name}: ref_logits max |diff| {diff:.2e}; mean of {w.numel()} window NLLs {w.double().mean().item():.6f}"
          f" vs ref_nll {ref_nll.item():.6f} (rel {rel:.1e})")
    assert rel < 1e-5, "the per-window NLLs do not average to ref_nll"
    with safe_open(path, "np") as f:
        before = {k: f.get_tensor(k) for k in f.keys() if k != "ref_window_nll"}
    tensors = {k: v for k, v in load_file(path).items() if k != "ref_window_nll"}
    tensors["ref_window_nll"] = w.float().contiguous()
    save_file(tensors, path)
    with safe_open(path, "np") as f:
        for k, v in before.items():
            got = f.get_tensor(k)
            assert got.dtype == v.dtype and got.shape == v.shape and got.tobytes() == v.tobytes(), k
    print("wrote ref_window_nll to", path, "(existing tensors unchanged)")


from transformers import Qwen3_5MoeForConditionalGeneration, Qwen3NextForCausalLM
add("tiny-qwen3_5moe-code", Qwen3_5MoeForConditionalGeneration)
add("tiny-qwen3next-code", Qwen3NextForCausalLM)
