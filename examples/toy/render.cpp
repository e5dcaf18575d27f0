#include "examples/toy/render.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#ifdef MOM_WITH_PNG
#include <png.h>
#endif

#include "core/error.h"
#include "examples/toy/vocab.h"
#include "examples/toy/world.h"

namespace mom::toy {

namespace {

constexpr int32_t kMaxScale = 64;
constexpr unsigned char kBackgroundRgb[3] = {245, 245, 245};
constexpr unsigned char kInvalidRgb[3] = {128, 128, 128};
constexpr unsigned char kSeparatorRgb[3] = {40, 40, 40};
// More than `mom generate --samples` asks for; at the largest scale, a grid of about 1 GB.
constexpr int32_t kMaxGridImages = 1024;
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

void write_bytes(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  MOM_CHECK(out.good(), "render", path << ": cannot open for writing: " << std::strerror(errno));
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  MOM_CHECK(out.good(), "render", path << ": write failed");
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
  write_ppm(path, image_grid({pixels}, scale));
}

Raster image_grid(const std::vector<std::vector<int32_t>>& images, int scale) {
  MOM_CHECK(scale >= 1 && scale <= kMaxScale, "render", "scale " << scale << " is not in [1, " << kMaxScale << "]");
  MOM_CHECK(!images.empty() && images.size() <= static_cast<size_t>(kMaxGridImages), "render",
            "a grid of " << images.size() << " images is not in [1, " << kMaxGridImages << "]");
  const int n = static_cast<int>(images.size()), side = kImageSide * scale;
  Raster out;
  out.width = n * side + n - 1;
  out.height = side;
  out.rgb.resize(static_cast<size_t>(out.width) * out.height * 3);
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> image = fit_image(images[i]);
    const int x0 = i * (side + 1);
    for (int y = 0; y < side; ++y) {
      for (int x = 0; x < side; ++x) {
        int32_t t = image[(y / scale) * kImageSide + x / scale];
        const unsigned char* rgb = t == kPixelBackground ? kBackgroundRgb
                                   : is_pixel(t)         ? kColourRgb[t - kPixelColourBegin]
                                                         : kInvalidRgb;
        std::copy(rgb, rgb + 3, &out.rgb[(static_cast<size_t>(y) * out.width + x0 + x) * 3]);
      }
      if (i + 1 < n)
        std::copy(kSeparatorRgb, kSeparatorRgb + 3, &out.rgb[(static_cast<size_t>(y) * out.width + x0 + side) * 3]);
    }
  }
  return out;
}

void write_ppm(const std::string& path, const Raster& raster) {
  std::string data = "P6\n" + std::to_string(raster.width) + " " + std::to_string(raster.height) + "\n255\n";
  data.append(reinterpret_cast<const char*>(raster.rgb.data()), raster.rgb.size());
  write_bytes(path, data);
}

#ifdef MOM_WITH_PNG
bool png_supported() { return true; }

void write_png(const std::string& path, const Raster& raster) {
  // libpng's simplified API: it handles its own error recovery (setjmp) inside, and reports by message.
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(raster.width);
  image.height = static_cast<png_uint_32>(raster.height);
  image.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  bool ok = png_image_write_get_memory_size(image, size, 0, raster.rgb.data(), 0, nullptr);
  std::string data(ok ? size : 0, '\0');
  ok = ok && png_image_write_to_memory(&image, data.data(), &size, 0, raster.rgb.data(), 0, nullptr);
  std::string message = image.message;
  png_image_free(&image);
  MOM_CHECK(ok, "render", path << ": libpng cannot encode the image: " << message);
  data.resize(size);
  write_bytes(path, data);
}
#else
bool png_supported() { return false; }

void write_png(const std::string& path, const Raster&) {
  MOM_THROW("render", path << ": built without libpng: install libpng-dev (apt-get install libpng-dev) and rebuild");
}
#endif

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
