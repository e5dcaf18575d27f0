#include "examples/toy/render.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "examples/toy/vocab.h"
#include "examples/toy/world.h"

namespace mom::toy {

namespace {

constexpr int32_t kMaxScale = 64;
constexpr unsigned char kBackgroundRgb[3] = {245, 245, 245};
constexpr unsigned char kInvalidRgb[3] = {128, 128, 128};
constexpr unsigned char kColourRgb[kNumColours][3] = {
    {220, 40, 40}, {40, 170, 60}, {40, 80, 220}, {235, 200, 30}, {150, 60, 200}, {245, 130, 20}};

std::string name(int32_t id) {
  if (id < 0 || id >= kToyVocabSize) return "?" + std::to_string(id);
  return toy_vocab().token_names[id];
}

bool is_pixel(int32_t t) { return t >= kImageBegin && t < kImageEnd; }
bool is_speech(int32_t t) { return t >= kSpeechBegin && t < kSpeechEnd; }

// Exactly 81 tokens: padded with background, or cut.
std::vector<int32_t> fit_image(const std::vector<int32_t>& pixels) {
  std::vector<int32_t> out(pixels.begin(), pixels.begin() + std::min<size_t>(pixels.size(), kImagePixels));
  out.resize(kImagePixels, kPixelBackground);
  return out;
}

char pixel_char(int32_t t) {
  if (t == kPixelBackground) return '.';
  if (is_pixel(t)) return kColourNames[t - kPixelColourBegin][0];
  return '?';
}

void join(std::string& out, const std::string& word) {
  if (word.empty()) return;
  if (!out.empty()) out += ' ';
  out += word;
}

}  // namespace

std::string render_text(const std::vector<int32_t>& tokens) {
  std::string out;
  for (size_t i = 0; i < tokens.size();) {
    bool pixel = is_pixel(tokens[i]), speech = is_speech(tokens[i]);
    if (!pixel && !speech) {
      join(out, name(tokens[i++]));
      continue;
    }
    size_t j = i;
    while (j < tokens.size() && (pixel ? is_pixel(tokens[j]) : is_speech(tokens[j]))) ++j;
    join(out, "[" + std::to_string(j - i) + (pixel ? " pixels]" : " units]"));
    i = j;
  }
  return out;
}

std::string render_speech(const std::vector<int32_t>& units) {
  std::string out;
  for (size_t i = 0; i < units.size();) {
    size_t j = i;
    while (j < units.size() && units[j] == units[i]) ++j;
    if (units[i] == kSilence)
      join(out, "|");
    else
      join(out, name(units[i]) + (j - i > 1 ? "*" + std::to_string(j - i) : ""));
    i = j;
  }
  return out;
}

std::string render_image_ascii(const std::vector<int32_t>& pixels) {
  std::vector<int32_t> image = fit_image(pixels);
  std::string out;
  for (int32_t r = 0; r < kImageSide; ++r) {
    for (int32_t c = 0; c < kImageSide; ++c) {
      if (c > 0) out += ' ';
      out += pixel_char(image[r * kImageSide + c]);
    }
    out += '\n';
  }
  return out;
}

void write_image_ppm(const std::string& path, const std::vector<int32_t>& pixels, int scale) {
  MOM_CHECK(scale >= 1 && scale <= kMaxScale, "render",
            path << ": scale " << scale << " is not in [1, " << kMaxScale << "]");
  std::vector<int32_t> image = fit_image(pixels);
  const int side = kImageSide * scale;
  std::string data = "P6\n" + std::to_string(side) + " " + std::to_string(side) + "\n255\n";
  for (int y = 0; y < side; ++y)
    for (int x = 0; x < side; ++x) {
      int32_t t = image[(y / scale) * kImageSide + x / scale];
      const unsigned char* rgb = t == kPixelBackground ? kBackgroundRgb
                                 : is_pixel(t)         ? kColourRgb[t - kPixelColourBegin]
                                                       : kInvalidRgb;
      data.append(reinterpret_cast<const char*>(rgb), 3);
    }
  std::ofstream out(path, std::ios::binary);
  MOM_CHECK(out.good(), "render", path << ": cannot open for writing: " << std::strerror(errno));
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  MOM_CHECK(out.good(), "render", path << ": write failed");
}

std::string render_document(const std::vector<int32_t>& document) {
  std::string out;
  for (size_t i = 0; i < document.size();) {
    bool marked = document[i] >= 0 && document[i] < kNumSpecials;
    size_t begin = marked ? i + 1 : i, end = begin;
    while (end < document.size() && !(document[end] >= 0 && document[end] < kNumSpecials)) ++end;
    std::vector<int32_t> body(document.begin() + begin, document.begin() + end);
    std::string line = marked ? name(document[i]) : "";
    if (marked && document[i] == kBeginImage) {
      out += line + "\n";
      std::string art = render_image_ascii(body);
      for (size_t p = 0; p < art.size();) {
        size_t q = art.find('\n', p);
        out += "    " + art.substr(p, q - p + 1);
        p = q + 1;
      }
    } else {
      join(line, marked && document[i] == kBeginSpeech ? render_speech(body) : render_text(body));
      out += line + "\n";
    }
    i = end;
  }
  return out;
}

}  // namespace mom::toy
