#include "examples/toy/accuracy.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "core/error.h"

namespace mom::toy {

namespace {

struct TaskNames {
  const char *key, *name, *short_name;
};

const TaskNames& names_of(Task task) {
  static const TaskNames names[kNumTasks] = {{"caption_image", "caption -> image", "c>i"},
                                             {"caption_speech", "caption -> speech", "c>s"},
                                             {"image_caption", "image -> caption", "i>c"},
                                             {"speech_caption", "speech -> caption", "s>c"}};
  return names[static_cast<int>(task)];
}

// The same objects, in any order (parse_caption refuses two objects in one cell, so neither scene
// repeats an object).
bool same_objects(const Scene& a, const Scene& b) {
  if (a.objects.size() != b.objects.size()) return false;
  for (const Object& o : a.objects)
    if (std::find(b.objects.begin(), b.objects.end(), o) == b.objects.end()) return false;
  return true;
}

// Units with each run of one unit as one: what parse_speech reads.
std::vector<int32_t> collapse_runs(const std::vector<int32_t>& units) {
  std::vector<int32_t> out;
  for (int32_t u : units)
    if (out.empty() || out.back() != u) out.push_back(u);
  return out;
}

// What every right speech of the caption collapses to: each spoken word's units (neighbours distinct), a
// silence between words.
std::vector<int32_t> collapsed_speech_of(const std::vector<int32_t>& caption) {
  std::vector<int32_t> out;
  for (int32_t w : caption) {
    if (w == kWordPeriod) continue;
    if (!out.empty()) out.push_back(kSilence);
    const std::vector<int32_t>& units = pronunciation(w);
    out.insert(out.end(), units.begin(), units.end());
  }
  return out;
}

bool starts(const std::vector<int32_t>& whole, const std::vector<int32_t>& prefix) {
  return prefix.size() <= whole.size() && std::equal(prefix.begin(), prefix.end(), whole.begin());
}

std::vector<int32_t> prompt_of(int32_t marker, const std::vector<int32_t>& segment, int32_t then) {
  std::vector<int32_t> p = {kBos, marker};
  p.insert(p.end(), segment.begin(), segment.end());
  p.push_back(then);
  return p;
}

}  // namespace

const char* task_key(Task task) { return names_of(task).key; }
const char* task_name(Task task) { return names_of(task).name; }
const char* task_short(Task task) { return names_of(task).short_name; }

std::vector<int32_t> task_prompt(Task task, const Segments& d) {
  switch (task) {
    case Task::caption_image: return prompt_of(kBeginText, d.caption, kBeginImage);
    case Task::caption_speech: return prompt_of(kBeginText, d.caption, kBeginSpeech);
    case Task::image_caption: return prompt_of(kBeginImage, d.image, kBeginText);
    case Task::speech_caption: return prompt_of(kBeginSpeech, d.speech, kBeginText);
  }
  MOM_THROW("accuracy", "no task " << static_cast<int>(task));
}

SegmentSpec task_segment(Task task, const Segments& d) {
  switch (task) {
    case Task::caption_image: return {{{kImageBegin, kImageEnd}}, {}, {}, kImagePixels};
    case Task::caption_speech: {
      SegmentSpec s{{{kSpeechBegin, kSpeechEnd}}, {kEos, kBeginText, kBeginImage}, {},
                    4 * static_cast<int64_t>(d.speech.size()) + 16};
      // Its first unit that no right speech continues settles the row (not exact) and ends it.
      s.abandon = [caption = d.caption](const std::vector<int32_t>& kept) {
        return !speech_may_match_caption(caption, kept);
      };
      return s;
    }
    case Task::image_caption:
    case Task::speech_caption:
      return {{{kTextBegin, kTextEnd}}, {kEos, kBeginImage, kBeginSpeech}, {kWordPeriod}, kMaxCaptionWords};
  }
  MOM_THROW("accuracy", "no task " << static_cast<int>(task));
}

bool task_exact(Task task, const Segments& d, const std::vector<int32_t>& generated) {
  switch (task) {
    case Task::caption_image: return image_matches_caption(d.caption, generated);
    case Task::caption_speech: return speech_matches_caption(d.caption, generated);
    case Task::image_caption: {
      const auto want = parse_caption(d.caption), got = parse_caption(generated);
      return want && got && same_objects(*want, *got);
    }
    case Task::speech_caption: {
      const auto spoken = parse_speech(d.speech);
      if (!spoken || generated.empty() || generated.back() != kWordPeriod) return false;
      return std::equal(spoken->begin(), spoken->end(), generated.begin(), generated.end() - 1);
    }
  }
  MOM_THROW("accuracy", "no task " << static_cast<int>(task));
}

bool speech_may_match_caption(const std::vector<int32_t>& caption, const std::vector<int32_t>& units) {
  if (!parse_caption(caption)) return false;
  if (!std::all_of(units.begin(), units.end(), [](int32_t u) { return u >= kSpeechBegin && u < kSpeechEnd; }))
    return false;
  return starts(collapsed_speech_of(caption), collapse_runs(units));
}

double TaskScore::share() const {
  return count > 0 ? static_cast<double>(exact) / count : std::numeric_limits<double>::quiet_NaN();
}

double TaskScore::pixel_share() const {
  return pixels > 0 ? static_cast<double>(pixels_right) / pixels : std::numeric_limits<double>::quiet_NaN();
}

TaskScore score_task(Task task, const std::vector<Segments>& documents,
                     const std::vector<std::vector<int32_t>>& generations) {
  MOM_CHECK(documents.size() == generations.size(), "accuracy",
            task_name(task) << ": " << generations.size() << " generations for " << documents.size() << " documents");
  TaskScore s;
  for (size_t i = 0; i < documents.size(); ++i) {
    const Segments& d = documents[i];
    const std::vector<int32_t>& g = generations[i];
    ++s.count;
    s.exact += task_exact(task, d, g);
    if (task == Task::caption_image) {
      s.pixels += kImagePixels;
      for (size_t p = 0; p < std::min(g.size(), d.image.size()); ++p) s.pixels_right += g[p] == d.image[p];
    }
  }
  return s;
}

TaskRows task_rows(const std::vector<Segments>& documents) {
  TaskRows rows;
  for (Task t : kTasks)
    for (const Segments& d : documents) {
      rows.prompts.push_back(task_prompt(t, d));
      rows.specs.push_back(task_segment(t, d));
    }
  return rows;
}

GenerationAccuracy evaluate_generation(const nn::MambaLM& model, const std::vector<std::vector<int32_t>>& documents,
                                       int64_t doc_token, int64_t max_rows_per_batch) {
  MOM_CHECK(!documents.empty(), "accuracy", "no document to measure generation on");
  MOM_CHECK(max_rows_per_batch >= 1, "accuracy", "max_rows_per_batch " << max_rows_per_batch << " is below 1");
  std::vector<Segments> docs;
  for (size_t i = 0; i < documents.size(); ++i) {
    std::optional<Segments> s = split_document(documents[i]);
    MOM_CHECK(s.has_value(), "accuracy", "document " << i << " (" << documents[i].size() << " tokens) is not <bos>, "
              << "a caption, an image and speech, <eos>: it has no scene to measure generation on");
    docs.push_back(std::move(*s));
  }
  // Every task's rows in one list (task after task), continued in batches: rows of different tasks
  // share a batch, since each row has its own segment spec.
  const TaskRows rows_of_tasks = task_rows(docs);
  const std::vector<std::vector<int32_t>>& prompts = rows_of_tasks.prompts;
  const std::vector<SegmentSpec>& specs = rows_of_tasks.specs;
  std::vector<std::vector<int32_t>> generated;
  Generator unused(0);  // greedy draws nothing
  for (size_t begin = 0; begin < prompts.size(); begin += static_cast<size_t>(max_rows_per_batch)) {
    const size_t end = std::min(prompts.size(), begin + static_cast<size_t>(max_rows_per_batch));
    std::vector<std::vector<int32_t>> rows = continue_prompts(
        model, {prompts.begin() + begin, prompts.begin() + end}, {specs.begin() + begin, specs.begin() + end},
        SamplingOptions{}, unused, doc_token);
    for (auto& r : rows) generated.push_back(std::move(r));
  }
  GenerationAccuracy out;
  const size_t n = docs.size();
  for (size_t k = 0; k < kTasks.size(); ++k)
    out.tasks[k] = score_task(kTasks[k], docs, {generated.begin() + k * n, generated.begin() + (k + 1) * n});
  return out;
}

std::string format_generation_accuracy(const GenerationAccuracy& a) {
  std::string out = "gen";
  char buf[64];
  for (Task t : kTasks) {
    const TaskScore& s = a[t];
    std::snprintf(buf, sizeof buf, " %s %lld/%lld", task_short(t), static_cast<long long>(s.exact),
                  static_cast<long long>(s.count));
    out += buf;
    if (t == Task::caption_image) {
      std::snprintf(buf, sizeof buf, " px %.2f", s.pixel_share());
      out += buf;
    }
  }
  return out;
}

}  // namespace mom::toy
