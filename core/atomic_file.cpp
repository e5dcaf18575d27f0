#include "core/atomic_file.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

namespace mom {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

// The file to write: `path` itself, or the file a symbolic link at `path` leads to. Throws unless that
// is a regular file or does not exist.
std::string destination(const std::string& path, const char* op) {
  MOM_CHECK(!path.empty(), op, "the output path is empty");
  struct stat lst;
  if (::lstat(path.c_str(), &lst) != 0) {
    MOM_CHECK(errno == ENOENT, op, path << ": cannot inspect the destination: " << std::strerror(errno));
    return path;  // a new file
  }
  if (S_ISREG(lst.st_mode)) return path;
  MOM_CHECK(S_ISLNK(lst.st_mode), op, path << ": is " << kind_of(lst.st_mode)
            << ", not a regular file; refusing to replace it");
  struct stat st;
  MOM_CHECK(::stat(path.c_str(), &st) == 0, op, path << ": is a symbolic link that leads nowhere ("
            << std::strerror(errno) << "); refusing to write through it");
  MOM_CHECK(S_ISREG(st.st_mode), op, path << ": is a symbolic link to " << kind_of(st.st_mode)
            << ", not to a regular file; refusing to replace it");
  char* real = ::realpath(path.c_str(), nullptr);
  MOM_CHECK(real != nullptr, op, path << ": cannot resolve the symbolic link: " << std::strerror(errno));
  std::string out(real);
  std::free(real);
  return out;
}

std::string directory_of(const std::string& file) {
  size_t slash = file.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : file.substr(0, slash);
}

// Buffered writes to a file descriptor; every failure throws with the system's reason.
class FdWriter {
 public:
  FdWriter(int fd, const std::string& path, const char* op) : fd_(fd), path_(path), op_(op), buffer_(1 << 16) {}
  void put(const void* data, size_t n) {
    if (n == 0) return;  // data may be null then
    if (n >= buffer_.size()) {
      flush();
      write_all(static_cast<const char*>(data), n);
      return;
    }
    if (used_ + n > buffer_.size()) flush();
    std::memcpy(buffer_.data() + used_, data, n);
    used_ += n;
  }
  void flush() {
    write_all(buffer_.data(), used_);
    used_ = 0;
  }

 private:
  void write_all(const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t(1) << 30));
      if (w < 0 && errno == EINTR) continue;
      MOM_CHECK(w > 0, op_, path_ << ": write failed: " << (w < 0 ? std::strerror(errno) : "no progress"));
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  int fd_;
  const std::string& path_;
  const char* op_;
  std::vector<char> buffer_;
  size_t used_ = 0;
};

}  // namespace

void write_file_atomically(const std::string& path, const char* op, const std::function<void(const ByteSink&)>& fill) {
  const std::string target = destination(path, op);
  const std::string dir = directory_of(target);
  const std::string tmp = target + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0 && errno == EEXIST) {
    // Named with this process's id: left by a killed process that had the same id. Ours to replace.
    ::unlink(tmp.c_str());
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  }
  MOM_CHECK(fd >= 0, op, path << ": cannot create the temporary file " << tmp << " (is " << dir
            << " an existing, writable directory?): " << std::strerror(errno));
  try {
    FdWriter writer(fd, path, op);
    fill([&](const void* data, size_t n) { writer.put(data, n); });
    writer.flush();
    MOM_CHECK(::fsync(fd) == 0, op, path << ": fsync failed: " << std::strerror(errno));
    const int closed = ::close(fd);
    fd = -1;
    MOM_CHECK(closed == 0, op, path << ": close failed: " << std::strerror(errno));
    destination(path, op);  // the destination may have changed while we wrote
    MOM_CHECK(::rename(tmp.c_str(), target.c_str()) == 0, op,
              path << ": cannot rename " << tmp << " over it: " << std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::vector<std::string> remove_stale_temporaries(const std::string& path) {
  std::vector<std::string> removed;
  std::string target = path;
  try {
    target = destination(path, "atomic_file");
  } catch (const Error&) {
    if (path.empty()) return removed;  // otherwise the temporaries sit beside `path` itself
  }
  const std::string dir = directory_of(target);
  const size_t slash = target.rfind('/');
  const std::string prefix = (slash == std::string::npos ? target : target.substr(slash + 1)) + ".tmp.";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return removed;
  const pid_t self = ::getpid();
  while (const dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::strtol(digits.c_str(), nullptr, 10);
    if (pid <= 0 || pid == self) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive (EPERM: someone else's)
    const std::string file = (dir == "/" ? "" : dir) + "/" + name;
    struct stat st;
    if (::lstat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::unlink(file.c_str()) == 0) removed.push_back(file);
  }
  ::closedir(d);
  return removed;
}

}  // namespace mom
