// The model's generations measured as accuracies: each held-out toy document's scene is given to the
// model in one modality, and its greedy continuation in another is checked against the document.
//
//   caption -> image    <bos> <text> caption <image>, then 81 pixels; exact when the image draws the
//                       caption's scene (image_matches_caption).
//   caption -> speech   <bos> <text> caption <speech>, then units until <eos>, <text> or <image>, at most
//                       4 x the document's speech + 16; exact when they spell the caption
//                       (speech_matches_caption). A row ends early at its first unit that no right
//                       speech continues (SegmentSpec::abandon): its verdict is settled (a prefix that
//                       nothing continues rightly is not right itself), and a model that speaks on
//                       without stopping costs what its right part costs, not 4 x the speech.
//   image -> caption    <bos> <image> pixels <text>, then words until "." (kept) or <eos>, <image> or
//                       <speech>, at most 40; exact when the caption parses to the document's scene: the
//                       same objects, in any order.
//   speech -> caption   <bos> <speech> units <text>, then words as above; exact when they are the words
//                       the speech spells (parse_speech), then ".".
//
// The stops are the ends a segment has in training documents: the next segment's marker or <eos>.
// Image -> caption compares scenes, not strings: an image shows its objects in no order, and the world
// writes a caption's objects in the scene's (random) order, so every order of the right objects is a
// right caption. Caption -> image also counts the pixels equal to the document's own image.
//
// Scoring (score_task) is separate from generation, so that it can be checked on hand-made generations.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "examples/toy/generate.h"
#include "examples/toy/world.h"
#include "nn/lm.h"

namespace mom::toy {

enum class Task { caption_image, caption_speech, image_caption, speech_caption };
constexpr int kNumTasks = 4;
inline constexpr std::array<Task, kNumTasks> kTasks = {Task::caption_image, Task::caption_speech,
                                                       Task::image_caption, Task::speech_caption};

// "caption_image" (log.jsonl's acc_<key>), "caption -> image" (tables), "c>i" (the progress line).
const char* task_key(Task task);
const char* task_name(Task task);
const char* task_short(Task task);

constexpr int64_t kMaxCaptionWords = 40;  // an image -> caption or speech -> caption continuation, at most

// A task's prompt and continuation for a document's segments, as the table above says.
std::vector<int32_t> task_prompt(Task task, const Segments& document);
SegmentSpec task_segment(Task task, const Segments& document);
// Every task's rows for the documents, task after task (kTasks' order), each document in order: the
// prompts and their segments, as evaluate_generation continues them.
struct TaskRows {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SegmentSpec> specs;
};
TaskRows task_rows(const std::vector<Segments>& documents);
// Whether a continuation (its kept tokens) is right for the document.
bool task_exact(Task task, const Segments& document, const std::vector<int32_t>& generated);
// Whether some continuation of the units spells the caption (speech_matches_caption): their runs
// collapsed are the start of the caption's words' units with a silence between words. False for an
// ill-formed caption or a token that is no speech unit.
bool speech_may_match_caption(const std::vector<int32_t>& caption, const std::vector<int32_t>& units);

struct TaskScore {
  int64_t count = 0, exact = 0;
  int64_t pixels = 0, pixels_right = 0;  // caption -> image: kImagePixels per document, and those equal to its image
  double share() const;                  // exact / count; NaN for no document
  double pixel_share() const;            // pixels_right / pixels; NaN for no pixel
};

// The generations (one per document, in order) scored against the documents. Throws [accuracy] when
// the counts differ.
TaskScore score_task(Task task, const std::vector<Segments>& documents,
                     const std::vector<std::vector<int32_t>>& generations);

struct GenerationAccuracy {
  std::array<TaskScore, kNumTasks> tasks;  // in kTasks' order
  const TaskScore& operator[](Task t) const { return tasks[static_cast<size_t>(t)]; }
};

// The four tasks, greedy, on the documents' scenes: all rows of all tasks in batches of at most
// max_rows_per_batch rows (continue_prompts). doc_token as in continue_prompts. Throws [accuracy] for no
// document, a document that is not <bos>, a caption, an image and speech (in any order), <eos>
// (split_document), or max_rows_per_batch < 1.
GenerationAccuracy evaluate_generation(const nn::MambaLM& model, const std::vector<std::vector<int32_t>>& documents,
                                       int64_t doc_token, int64_t max_rows_per_batch);

// "gen c>i 12/32 px 0.85 c>s 3/32 i>c 20/32 s>c 28/32": exact counts, and caption -> image's pixel share.
std::string format_generation_accuracy(const GenerationAccuracy& accuracy);

}  // namespace mom::toy
