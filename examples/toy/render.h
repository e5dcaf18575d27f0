// Human-readable views of toy tokens: text for the terminal, images as PPM files or ASCII art.
//
//   render_text      every token by name (words as words, specials as <bos> <image> ...), except that a
//                    run of image tokens becomes "[N pixels]" and a run of speech tokens "[N units]".
//   render_speech    runs of equal units: "u12*3" is u12 held for 3 steps, "|" a silence of any length.
//   render_image_ascii / write_image_ppm
//                    the 9 x 9 raster, one character (or scale x scale block of pixels) per token:
//                    '.' background, the colour's initial (r g b y p o), '?' for a token that is no pixel.
//                    Fewer than 81 tokens are padded with background, more are cut to 81: a generated
//                    image may have the wrong length, and is still shown.
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
std::string render_document(const std::vector<int32_t>& document);

}  // namespace mom::toy
