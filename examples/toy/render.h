// Human-readable views of toy tokens: text for the terminal, images as PPM files or ASCII art.
//
//   render_text      every token by name (words as words, specials as <bos> <image> ...), except that a
//                    run of image tokens becomes "[N pixels]" and a run of speech tokens "[N units]".
//   render_speech    runs of equal units: "u12*3" is u12 held for 3 steps, "|" a silence of any length.
//   render_image_ascii / write_image_ppm / image_grid
//                    the 9 x 9 raster, one character (or scale x scale block of pixels) per token:
//                    '.' background, the colour's initial (r g b y p o), '?' for a token that is no pixel.
//                    Fewer than 81 tokens are padded with background, more are cut to 81: a generated
//                    image may have the wrong length, and is still shown.
//   image_grid       images side by side, a 1-pixel separator between them, written as PPM or PNG.
//   render_document  one line per segment, the image as ASCII art (for `mom data` and `mom generate`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mom::toy {

std::string render_text(const std::vector<int32_t>& tokens);
std::string render_speech(const std::vector<int32_t>& units);
std::string render_image_ascii(const std::vector<int32_t>& pixels);
// Binary PPM (P6), each pixel a scale x scale block (scale >= 1); throws [render] when it cannot write.
void write_image_ppm(const std::string& path, const std::vector<int32_t>& pixels, int scale);

// An RGB image, rows top to bottom, 3 bytes a pixel.
struct Raster {
  int width = 0, height = 0;
  std::vector<unsigned char> rgb;
};
// The images left to right, each as write_image_ppm draws it (scale in [1, 64]), with a 1-pixel dark
// separator column between neighbours: (n * 9 * scale + n - 1) x (9 * scale). Throws [render] for no
// image or a bad scale.
Raster image_grid(const std::vector<std::vector<int32_t>>& images, int scale);
// Binary PPM (P6) and PNG (8-bit RGB) files; throw [render] when they cannot write. write_png also
// throws [render] in a build without libpng (png_supported() false), naming the package to install.
void write_ppm(const std::string& path, const Raster& raster);
void write_png(const std::string& path, const Raster& raster);
bool png_supported();
std::string render_document(const std::vector<int32_t>& document);

}  // namespace mom::toy
