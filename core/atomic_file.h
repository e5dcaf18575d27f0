// Writes a file so that readers see the old one or the whole new one, never a part: the bytes go to a
// temporary file beside it (<path>.tmp.<pid>), which is flushed to disk and then renamed over <path>.
// A failure (an exception from `fill`, a full disk) removes the temporary file and rethrows; a process
// killed before the rename leaves the old file as it was.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace mom {

using ByteSink = std::function<void(const void* data, size_t n)>;

// Errors are mom::Error starting "[op] <path>: ...".
void write_file_atomically(const std::string& path, const char* op, const std::function<void(const ByteSink&)>& fill);

}  // namespace mom
