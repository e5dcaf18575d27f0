// Writes a file so that readers see the old one or the whole new one, never a part: the bytes go to a
// temporary file beside it (<path>.tmp.<pid>), which is flushed to disk (fsync), closed and renamed over
// <path>; then the directory is synced so that the rename itself survives a crash (best effort: a file
// system that cannot sync a directory is not an error).
//
// What may be replaced: only a regular file, or nothing. A directory, character or block device, FIFO
// or socket at <path> is refused and left untouched (a rename would turn a device node into a regular
// file). A symbolic link is followed, through every link: the regular file it leads to is replaced
// (the temporary file goes beside that file) and the link stays; a link that leads to anything else,
// or to nothing, is refused. The destination is checked before anything is written and again just
// before the rename. An empty path is refused.
//
// Errors are mom::Error starting "[op] <path>: ...": the temporary file cannot be created (the
// directory is missing or not writable, with the system's reason), a write fails or is short (a full
// disk), fsync, close or the rename fails. After any failure, an exception from `fill` included, the
// temporary file is removed and the old file is as it was. A process killed before the rename leaves
// the old file as it was and its temporary file behind, which remove_stale_temporaries removes later.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace mom {

using ByteSink = std::function<void(const void* data, size_t n)>;

void write_file_atomically(const std::string& path, const char* op, const std::function<void(const ByteSink&)>& fill);

// Removes the temporary files that writers of `path` killed before their rename left behind: the
// regular files named <path>.tmp.<pid> (in the directory of the file a symbolic link at <path> leads
// to, as the writer puts them) whose pid is no running process (kill(pid, 0) fails with ESRCH). Files
// of this process and of live processes are kept. Best effort, for one machine's processes on a local
// file system: what cannot be listed or removed is left as it is. Returns the paths removed.
std::vector<std::string> remove_stale_temporaries(const std::string& path);

}  // namespace mom
