// pq/io/decode.hpp: `pq decode`: the fp32 weights a compressed-tensors checkpoint holds, as pq dequantizes
// them, written to one safetensors file ("<linear>.weight" F32 [rows, cols]), for comparison with other readers.
#pragma once
#include <cstddef>
#include <filesystem>
#include <span>
#include <vector>

#include <pq/io/atomic_file.hpp>
#include <pq/io/export.hpp>
#include <pq/io/safetensors.hpp>

namespace pq::io {

// Returns the number of Linears written. An existing out_file is refused.
inline std::size_t decode_checkpoint(const std::filesystem::path& checkpoint, const std::filesystem::path& out_file) {
  const auto ct = ct_checkpoint::open(checkpoint);
  if (std::filesystem::exists(out_file)) throw write_error(out_file.string() + ": exists; refusing to overwrite");
  std::vector<tensor_decl> decls;
  for (const auto& l : ct.profile.linears) decls.push_back({l.name + ".weight", dtype::F32, {l.rows, l.cols}});
  write_atomically(out_file, [&](const std::filesystem::path& tmp) {
    safetensors_writer w(tmp, decls);
    for (std::size_t i = 0; i < ct.profile.linears.size(); ++i) {
      const std::vector<float> v = ct.weight(i);
      w.write(ct.profile.linears[i].name + ".weight", std::as_bytes(std::span(v)));
    }
    w.close();
  });
  return ct.profile.linears.size();
}

}  // namespace pq::io
