// pq/io/compressed_tensors.hpp: the quantization_config of a compressed-tensors checkpoint: config groups
// built from the formats' schemes with anchored targets that vLLM resolves for unfused and fused names
// alike, the ignore list, and the way back from a config group to a pq format.
#pragma once
#include <algorithm>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/arch/profile.hpp>
#include <pq/error.hpp>
#include <pq/formats/bundle.hpp>
#include <pq/io/model_dir.hpp>

namespace pq::io {

// A checkpoint pq cannot write as asked (a format with no compressed-tensors scheme, a decision unit whose
// Linears disagree, an output folder that would overwrite something): the message says what and where.
struct export_error : pq::error {
  using pq::error::error;
};

inline nlohmann::json ct_args_json(const ct_args& a, bool asymmetric) {
  nlohmann::json j;
  j["actorder"] = nullptr;
  j["block_structure"] = a.block_structure[0] ? nlohmann::json(a.block_structure) : nlohmann::json(nullptr);
  if (a.dynamic == ct_dynamic::local) j["dynamic"] = "local";
  else j["dynamic"] = a.dynamic == ct_dynamic::yes;
  j["group_size"] = a.group_size ? nlohmann::json(a.group_size) : nlohmann::json(nullptr);
  j["num_bits"] = a.num_bits;
  j["observer"] = a.observer.empty() ? nlohmann::json(nullptr) : nlohmann::json(std::string(a.observer));
  j["observer_kwargs"] = nlohmann::json::object();
  j["scale_dtype"] = a.scale_dtype.empty() ? nlohmann::json(nullptr) : nlohmann::json(std::string(a.scale_dtype));
  j["strategy"] = std::string(a.strategy);
  j["symmetric"] = a.symmetric;
  j["type"] = std::string(a.type);
  j["zp_dtype"] = asymmetric ? nlohmann::json("torch.int8") : nlohmann::json(nullptr);
  return j;
}

namespace detail {
inline std::string escape_dots(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '.') out += "\\.";
    else out += c;
  }
  return out;
}

// What a decision unit is, for its target regex: its module path within the layer up to the member
// names, and the module names that vLLM may ask for (unfused members and the fused name).
struct unit_kind {
  std::string prefix;        // e.g. "self_attn." or "mlp.shared_expert."
  std::string alternatives;  // e.g. "q_proj|k_proj|v_proj|qkv_proj"
};
inline unit_kind kind_of(const arch::profile& p, const arch::decision_unit& u) {
  std::vector<std::string> leaves;  // the members' own names, each once
  for (int m : u.members) {
    const std::string& n = p.linears[static_cast<std::size_t>(m)].name;
    const std::string leaf = n.substr(n.rfind('.') + 1);
    if (std::find(leaves.begin(), leaves.end(), leaf) == leaves.end()) leaves.push_back(leaf);
  }
  std::string alt;
  for (const std::string& l : leaves) {
    if (!alt.empty()) alt += '|';  // (not "" + std::string&&: GCC 12 -Wrestrict false positive, bug 105329)
    alt += l;
  }
  if (u.per_expert)  // vLLM asks for <module>.<e>.<leaf> (and the FusedMoE module itself)
    return {u.module, "(\\.[0-9]+\\.(" + alt + "))?"};
  const auto dot = u.module.rfind('.');
  const std::string prefix = dot == std::string::npos ? "" : u.module.substr(0, dot + 1);
  if (u.members.size() > 1) alt += "|" + u.module.substr(dot == std::string::npos ? 0 : dot + 1);  // the fused name
  return {prefix, alt};
}
}  // namespace detail

// Anchored regex targets covering exactly `units` (all of one format): units of one kind are merged
// across layers into one alternation, e.g. re:(?!(?:.*\.)?mtp\.).*\.layers\.(1|4)\.self_attn\.(q_proj|k_proj|v_proj|qkv_proj)$
inline std::vector<std::string> unit_targets(const arch::profile& p, const std::vector<int>& units) {
  std::map<std::pair<std::string, std::string>, std::vector<int>> by_kind;
  for (int ui : units) {
    const auto& u = p.units[static_cast<std::size_t>(ui)];
    const auto k = detail::kind_of(p, u);
    by_kind[{k.prefix, k.alternatives}].push_back(u.layer);
  }
  // `.*\.layers\.`: the last component of the description's layer path, after whatever precedes it; never under
  // an `mtp.` module: vLLM's MTP draft (Qwen3.5, Qwen3-Next) builds its layers as `mtp.layers.<m>` with this
  // quantization_config, and the MTP head is exported as stored.
  const std::string_view list = p.config.architecture().layers;
  const std::string layer_list = detail::escape_dots(std::string(list.substr(list.rfind('.') + 1)));
  std::vector<std::string> targets;
  for (const auto& [kind, layers] : by_kind) {
    std::string ls;
    for (int l : std::set<int>(layers.begin(), layers.end())) {
      if (!ls.empty()) ls += '|';
      ls += std::to_string(l);
    }
    const std::string prefix = detail::escape_dots(kind.first);
    const bool experts = kind.second.front() == '(';
    targets.push_back("re:(?!(?:.*\\.)?mtp\\.).*\\." + layer_list + "\\.(" + ls + ")\\." + prefix + (experts ? kind.second : "(" + kind.second + ")") + "$");
  }
  return targets;
}

// The quantization_config for a per-Linear assignment of format names (BF16 = unquantized: a passthrough format
// without a scheme goes to the ignore list; FP8_SOURCE, passthrough too, has its config group).
inline nlohmann::json quantization_config(const arch::profile& p, const std::vector<std::string>& formats) {
  std::map<std::string, std::vector<int>> units_of;  // format -> units
  std::vector<std::string> ignore;
  for (std::size_t u = 0; u < p.units.size(); ++u) {
    const std::string& f = formats[static_cast<std::size_t>(p.units[u].members.front())];
    for (int m : p.units[u].members)
      if (formats[static_cast<std::size_t>(m)] != f)
        throw export_error("decision unit " + p.units[u].name + " mixes formats " + f + " and " +
                                    formats[static_cast<std::size_t>(m)]);
    if (const format_traits t = resolve_format(f); t.passthrough && !t.has_scheme) {
      for (int m : p.units[u].members) ignore.push_back(p.linears[static_cast<std::size_t>(m)].name);
    } else {
      units_of[f].push_back(static_cast<int>(u));
    }
  }
  for (const auto& n : p.unquantized_linears) ignore.push_back(n);
  std::sort(ignore.begin(), ignore.end());

  nlohmann::ordered_json groups = nlohmann::ordered_json::object();
  std::set<std::string> ct_formats;
  int g = 0;
  all_formats::for_each([&](auto t) {
    using F = typename decltype(t)::type;
    const auto it = units_of.find(std::string(F::name));
    if (it == units_of.end()) return;
    if constexpr (F::scheme.has_value()) {
      constexpr ct_scheme s = *F::scheme;
      nlohmann::json group;
      group["format"] = std::string(s.format);
      group["input_activations"] = s.input_activations ? ct_args_json(*s.input_activations, false) : nlohmann::json(nullptr);
      group["output_activations"] = nullptr;
      group["targets"] = unit_targets(p, it->second);
      group["weights"] = ct_args_json(s.weights, F::asymmetric);
      groups["group_" + std::to_string(g++)] = group;
      ct_formats.insert(std::string(s.format));
    } else {
      throw export_error(std::string(F::name) + " has no compressed-tensors scheme vLLM loads; it cannot be exported");
    }
  });
  nlohmann::json q;
  q["config_groups"] = nlohmann::json(groups);
  q["format"] = ct_formats.size() == 1 ? *ct_formats.begin() : ct_formats.empty() ? "dense" : "mixed-precision";
  q["global_compression_ratio"] = nullptr;
  q["ignore"] = ignore;
  q["kv_cache_scheme"] = nullptr;
  q["quant_method"] = "compressed-tensors";
  q["quantization_status"] = "compressed";
  q["sparsity_config"] = nlohmann::json::object();
  q["transform_config"] = nlohmann::json::object();
  q["version"] = "0.15.0";
  return q;
}

// The pq format a config group describes (its scheme equals the format's), or nullopt.
inline std::optional<std::string> format_of_group(const nlohmann::json& group) {
  std::optional<std::string> found;
  all_formats::for_each([&](auto t) {
    using F = typename decltype(t)::type;
    if constexpr (F::scheme.has_value()) {
      constexpr ct_scheme s = *F::scheme;
      const bool has_input = group.contains("input_activations") && !group["input_activations"].is_null();
      if (!found && group.value("format", "") == s.format && has_input == s.input_activations.has_value() &&
          group.contains("weights") && group["weights"] == ct_args_json(s.weights, F::asymmetric))
        found = std::string(F::name);
    }
  });
  return found;
}

// Which pq format each Linear of the profile has in a checkpoint's quantization_config ("BF16" when
// ignored or untargeted). Targets are matched as vLLM does: exact names or re: regexes with re.match.
inline std::vector<std::string> formats_from_config(const arch::profile& p, const nlohmann::json& qc) {
  std::vector<std::pair<std::regex, std::string>> rules;
  std::vector<std::pair<std::string, std::string>> exact;
  for (auto it = qc.at("config_groups").begin(); it != qc.at("config_groups").end(); ++it) {
    const auto f = format_of_group(it.value());
    if (!f) throw model_dir_error("config group " + it.key() + " is not a scheme pq knows");
    for (const auto& t : it.value().at("targets")) {
      const std::string s = t.get<std::string>();
      if (s.rfind("re:", 0) == 0) rules.emplace_back(std::regex(s.substr(3)), *f);
      else exact.emplace_back(s, *f);
    }
  }
  std::set<std::string> ignored;
  for (const auto& i : qc.value("ignore", nlohmann::json::array())) ignored.insert(i.get<std::string>());
  std::vector<std::string> out;
  for (const auto& l : p.linears) {
    std::string f{BF16::name};  // not listed: left unquantized
    if (!ignored.contains(l.name)) {
      bool hit = false;
      for (const auto& [n, fmt] : exact)
        if (!hit && n == l.name) { f = fmt; hit = true; }
      for (const auto& [re, fmt] : rules)  // match_continuous anchors at the start, as Python's re.match
        if (!hit && std::regex_search(l.name, re, std::regex_constants::match_continuous)) { f = fmt; hit = true; }
    }
    out.push_back(f);
  }
  return out;
}

}  // namespace pq::io
