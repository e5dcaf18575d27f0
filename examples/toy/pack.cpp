#include "examples/toy/pack.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace mom::toy {

namespace {

using json = nlohmann::json;
constexpr const char* kOp = "pack";
constexpr size_t kMaxSpecials = 16;
constexpr size_t kMaxNameBytes = 64;

// A JSON value quoted briefly in a message.
std::string brief(const json& v) {
  std::string s = v.dump();
  return s.size() > 40 ? s.substr(0, 40) + "..." : s;
}

struct Declared {
  Vocab vocab;
  std::map<std::string, std::pair<int32_t, int32_t>> ranges;  // "special" or a modality -> [begin, end)
};

Declared read_declaration(const std::string& text, const std::string& path) {
  const json j = json::parse(text, nullptr, false);
  MOM_CHECK(!j.is_discarded() && j.is_object(), kOp, path << ": not a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    MOM_CHECK(it.key() == "specials" || it.key() == "modalities", kOp,
              path << ": unknown key '" << it.key().substr(0, kMaxNameBytes) << "' (expected specials, modalities)");
  MOM_CHECK(j.contains("specials") && j["specials"].is_array(), kOp, path << ": 'specials' must be a list of names");
  MOM_CHECK(j.contains("modalities") && j["modalities"].is_array(), kOp,
            path << ": 'modalities' must be a list of {\"name\": ..., \"tokens\": ...}");
  const json& specials = j["specials"];
  const json& modalities = j["modalities"];
  MOM_CHECK(specials.size() >= 1 && specials.size() <= kMaxSpecials, kOp,
            path << ": " << specials.size() << " specials; give 1 to " << kMaxSpecials);
  MOM_CHECK(modalities.size() >= 1 && modalities.size() <= static_cast<size_t>(kMaxModalities), kOp,
            path << ": " << modalities.size() << " modalities; the trainer takes 1 to " << kMaxModalities);
  Declared d;
  std::vector<std::string> special_names;
  for (const json& s : specials) {
    MOM_CHECK(s.is_string() && !s.get<std::string>().empty(), kOp, path << ": a special's name must be a non-empty string, got "
              << brief(s));
    special_names.push_back(s.get<std::string>());
  }
  const int32_t S = static_cast<int32_t>(specials.size());
  d.vocab.ranges.push_back({0, S, 0, "special"});
  d.ranges["special"] = {0, S};
  int64_t next = S;
  for (size_t m = 0; m < modalities.size(); ++m) {
    const json& e = modalities[m];
    MOM_CHECK(e.is_object() && e.contains("name") && e["name"].is_string() && e.contains("tokens") &&
                  e["tokens"].is_number_integer() && e.size() == 2,
              kOp, path << ": modality " << m << " must be {\"name\": NAME, \"tokens\": COUNT}, got " << brief(e));
    const std::string name = e["name"].get<std::string>();
    const int64_t n = e["tokens"].get<int64_t>();
    MOM_CHECK(!name.empty() && name.size() <= kMaxNameBytes && name != "special", kOp,
              path << ": modality " << m << "'s name must be 1 to " << kMaxNameBytes << " bytes and not 'special'");
    MOM_CHECK(!d.ranges.count(name), kOp, path << ": two modalities are named '" << name << "'");
    MOM_CHECK(n >= 1 && n <= kMaxVocabSize, kOp, path << ": modality '" << name << "' has " << n << " tokens");
    MOM_CHECK(m > 0 || n > S, kOp, path << ": the first modality ('" << name << "', " << n
              << " tokens) must have more tokens than there are specials (" << S
              << "): the specials are its tokens too, and a modality is named by its largest range");
    MOM_CHECK(next + n <= kMaxVocabSize, kOp, path << ": the vocabulary passes " << kMaxVocabSize << " ids at '" << name << "'");
    d.vocab.ranges.push_back({static_cast<int32_t>(next), static_cast<int32_t>(next + n), static_cast<int32_t>(m), name});
    d.ranges[name] = {static_cast<int32_t>(next), static_cast<int32_t>(next + n)};
    next += n;
  }
  d.vocab.size = static_cast<int32_t>(next);
  d.vocab.validate(kOp, path + ": ");
  return d;
}

}  // namespace

PackedData pack_jsonl(const std::string& vocab_json, const std::string& vocab_path, std::istream& lines,
                      const std::string& lines_path) {
  const Declared d = read_declaration(vocab_json, vocab_path);
  PackedData out;
  out.file.vocab = d.vocab;
  out.doc_token = d.ranges.at("special").second >= 2 ? 1 : -1;
  std::string line;
  int64_t n = 0;
  while (std::getline(lines, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = lines_path + ":" + std::to_string(n);
    const json doc = json::parse(line, nullptr, false);
    MOM_CHECK(!doc.is_discarded(), kOp, where << ": not valid JSON");
    MOM_CHECK(doc.is_object() && doc.size() == 1 && doc.contains("segments") && doc["segments"].is_array(), kOp,
              where << ": a document must be {\"segments\": [...]}");
    MOM_CHECK(!doc["segments"].empty(), kOp, where << ": the document has no segments");
    if (out.doc_token >= 0) out.file.tokens.push_back(out.doc_token);
    size_t k = 0;
    for (const json& seg : doc["segments"]) {
      MOM_CHECK(seg.is_object() && seg.size() == 2 && seg.contains("modality") && seg["modality"].is_string() &&
                    seg.contains("tokens") && seg["tokens"].is_array(),
                kOp, where << ": segment " << k << " must be {\"modality\": NAME, \"tokens\": [ids]}");
      const std::string name = seg["modality"].get<std::string>();
      auto r = d.ranges.find(name);
      MOM_CHECK(r != d.ranges.end(), kOp, where << ": segment " << k << " has modality '" << name.substr(0, kMaxNameBytes)
                << "', which " << vocab_path << " does not declare");
      const int64_t count = r->second.second - r->second.first;
      size_t i = 0;
      for (const json& t : seg["tokens"]) {
        MOM_CHECK(t.is_number_integer(), kOp, where << ": segment " << k << " token " << i << " is " << brief(t)
                  << ", not an integer");
        const int64_t id = t.get<int64_t>();
        MOM_CHECK(id >= 0 && id < count, kOp, where << ": segment " << k << " token " << i << " is " << id << ", outside '"
                  << name << "' ids 0 .. " << count - 1);
        out.file.tokens.push_back(static_cast<int32_t>(r->second.first + id));
        ++i;
      }
      ++k;
    }
    ++out.documents;
  }
  MOM_CHECK(!lines.bad(), kOp, lines_path << ": read error at line " << n + 1);
  MOM_CHECK(out.documents > 0, kOp, lines_path << ": no documents");
  return out;
}

std::string inspect_token_file(const TokenFile& file, const std::string& path, int64_t doc_token, int64_t show) {
  const Vocab& v = file.vocab;
  const std::vector<int32_t>& t = file.tokens;
  const std::vector<std::string> names = v.modality_names();
  const std::vector<int32_t> modality = v.modality_table();
  std::ostringstream out;
  char buf[256];
  out << path << ": " << t.size() << " tokens, a vocabulary of " << v.size << " ids in " << v.ranges.size()
      << " ranges, " << names.size() << " modalities\n";
  for (const Vocab::Range& r : v.ranges) {
    std::snprintf(buf, sizeof buf, "  range %-16s ids [%d, %d)  modality %d (%s)\n", r.name.c_str(), r.begin, r.end,
                  r.modality, names[r.modality].c_str());
    out << buf;
  }
  // Documents.
  const std::vector<int64_t> starts = document_starts(t, doc_token);
  const int64_t D = static_cast<int64_t>(starts.size()) - 1;
  std::vector<int64_t> lengths;
  std::map<std::string, int64_t> mixes;
  for (int64_t d = 0; d < D; ++d) {
    lengths.push_back(starts[d + 1] - starts[d]);
    std::vector<bool> has(names.size(), false);
    for (int64_t i = starts[d]; i < starts[d + 1]; ++i) has[modality[t[i]]] = true;
    std::string mix;
    for (size_t m = 0; m < names.size(); ++m)
      if (has[m]) mix += (mix.empty() ? "" : "+") + names[m];
    ++mixes[mix];
  }
  std::vector<int64_t> sorted = lengths;
  std::sort(sorted.begin(), sorted.end());
  if (D > 0) {
    std::snprintf(buf, sizeof buf, "%lld documents%s: length min %lld, median %lld, mean %.1f, max %lld tokens\n",
                  static_cast<long long>(D), doc_token >= 0 ? (" (starting at token " + std::to_string(doc_token) + ")").c_str() : "",
                  static_cast<long long>(sorted.front()), static_cast<long long>(sorted[sorted.size() / 2]),
                  static_cast<double>(t.size()) / static_cast<double>(D), static_cast<long long>(sorted.back()));
    out << buf;
  }
  out << "documents per mix of modalities:\n";
  for (const auto& [mix, n] : mixes) {
    std::snprintf(buf, sizeof buf, "  %-32s %lld\n", mix.c_str(), static_cast<long long>(n));
    out << buf;
  }
  // Tokens per modality.
  std::vector<int64_t> per_id(static_cast<size_t>(v.size), 0);
  for (int32_t x : t) ++per_id[x];
  out << "modality          tokens   share   ids used\n";
  for (size_t m = 0; m < names.size(); ++m) {
    int64_t n = 0, ids = 0, used = 0;
    for (int32_t id = 0; id < v.size; ++id)
      if (modality[id] == static_cast<int32_t>(m)) n += per_id[id], ++ids, used += per_id[id] > 0;
    std::snprintf(buf, sizeof buf, "%-12s %11lld %6.1f%%   %lld/%lld\n", names[m].c_str(), static_cast<long long>(n),
                  t.empty() ? 0.0 : 100.0 * static_cast<double>(n) / static_cast<double>(t.size()),
                  static_cast<long long>(used), static_cast<long long>(ids));
    out << buf;
  }
  // Problems.
  std::vector<std::string> problems;
  for (const Vocab::Range& r : v.ranges) {
    int64_t n = 0;
    for (int32_t id = r.begin; id < r.end; ++id) n += per_id[id];
    if (n == 0) problems.push_back("range '" + r.name + "' is never used");
  }
  if (doc_token >= 0 && (doc_token >= v.size || per_id[doc_token] == 0))
    problems.push_back("no token " + std::to_string(doc_token) + " starts a document: the file reads as one document");
  else if (doc_token >= 0 && !t.empty() && t[0] != doc_token)
    problems.push_back("the file's first token is not " + std::to_string(doc_token) + ": its first document has no start");
  out << (problems.empty() ? "problems: none found\n" : "problems:\n");
  for (const std::string& p : problems) out << "  " << p << "\n";
  // The first documents.
  for (int64_t d = 0; d < std::min(show, D); ++d) {
    out << "document " << d << " (" << lengths[d] << " tokens):";
    const int64_t shown = std::min<int64_t>(lengths[d], 64);
    for (int64_t i = starts[d]; i < starts[d] + shown; ++i) out << " " << v.token_str(t[i]);
    if (shown < lengths[d]) out << " ... (" << lengths[d] - shown << " more)";
    out << "\n";
  }
  return out.str();
}

}  // namespace mom::toy
