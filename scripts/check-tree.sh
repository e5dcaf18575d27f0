#!/usr/bin/env bash
# Checks that the tree's prose describes the tree: no development history, and no reference to a path
# or a function that does not exist. Run from anywhere; ctest runs it as the `cpu` test tree_check.
#
#   bash scripts/check-tree.sh        exit 0 when clean, else 1 and every offending line as FILE:LINE: text
#
# Files: those git knows (tracked, or new and not ignored; a tree without .git: every file outside
# build*/ and .git/): README.md, docs/*.md, and the sources and notes of core kernels autograd nn optim
# examples tests scripts cmake (.h .cpp .cu .cuh .sh .cmake CMakeLists.txt .md) and the top-level
# CMakeLists.txt. This script holds the patterns it looks for and is left out of check 1.
#
# 1. History. How the code got where it is belongs in commit messages; the tree says what the code
#    does now and why. Whole lines are searched (comments, and the strings that programs print), for
#    these extended regular expressions, case-insensitive unless marked:
#      \bsessions? [0-9]
#      \b(issue|pr|pull request)s?[ -]?#?[0-9]
#      \b(an?|the|our) (earlier|previous|former|older|old) (version|design|kernel|implementation|code|
#        layout|scheme|approach|attempt|measurement|number)s?\b
#      \b(earlier|previous|old|older) (version|design|kernel|implementation|measurement)s?\b
#      \bsupersed(e|ed|es|ing)\b  \bformerly\b  \bpreviously\b  \buntil now\b  \bused to be\b
#      \bno longer (is|are|does|do|uses?|has|have|holds?|runs?|needs?|takes?|reads?)\b
#      \b(was|were|got|has been|have been) (replaced|removed|moved|renamed|rewritten|dropped|reverted)\b
#      \bnow (takes?|reads?|runs?|uses?|writes?|holds?|keeps?|stores?|saves?|goes|go|lives?|calls?)\b
#      \b(went|changed) from\b
#      \bas before\b  \b(bits|results|numbers) did not change\b  \bnot kept in the tree\b
#      (^|[^[:alnum:]])Before, (case-sensitive)
#    Words that only look like history stay allowed: "before the rename", "the previous run's
#    checkpoint", "freed by an earlier backward", "no longer exist" (a process), "old file".
# 2. Paths. In README.md and docs/*.md (whole text) and in the comments of the sources above (after
#    // in C++ and CUDA, after a # that starts a word in shell and CMake; whole .md notes), a token
#    that starts with a top-level folder of the repository (core/, kernels/, ... as found in the file
#    list) must name a file or folder of the tree when it ends in a file extension or a slash
#    (`kernels/cuda/selective_scan.cu`, tests/fuzz/regressions/); in a `backticked` span of a
#    Markdown file any such word must exist. Words holding < > * { } $ [ ] are patterns and skipped.
#    A Markdown link's target (outside code blocks) must exist, relative to its file (web addresses are
#    not checked); no reference may point outside the repository (../); and a bare capitalised
#    Markdown name (README.md) must be the name of a file of the tree.
# 3. Functions. In README.md and docs/*.md, every `backticked` name( or ns::name( (inline spans, not
#    fenced blocks) must be an identifier that occurs in the code of the C++/CUDA sources (comments
#    left out).
set -uo pipefail
cd "$(dirname "$0")/.."
self="scripts/check-tree.sh"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  listing="$(git ls-files --cached --others --exclude-standard)"
else
  listing="$(find . \( -path ./.git -o -path './build*' \) -prune -o -type f -print | sed 's|^\./||')"
fi
all=()
while IFS= read -r f; do
  [ -f "$f" ] && all+=("$f")
done < <(printf '%s\n' "$listing" | sort -u)

topdirs="$(printf '%s\n' "${all[@]}" | awk -F/ 'NF > 1 { print $1 }' | sort -u | grep -v '^\.' | paste -sd'|')"
docs=() sources=() code=()
for f in "${all[@]}"; do
  case "$f" in
    README.md | docs/*.md) docs+=("$f") ;;
    CMakeLists.txt) sources+=("$f") ;;
    core/* | kernels/* | autograd/* | nn/* | optim/* | examples/* | tests/* | scripts/* | cmake/*)
      case "$f" in
        *.h | *.cpp | *.cu | *.cuh) sources+=("$f") code+=("$f") ;;
        *.sh | *.cmake | */CMakeLists.txt | *.md) sources+=("$f") ;;
      esac ;;
  esac
done

failed=0
report() {  # title, offending lines
  [ -z "$2" ] && return
  failed=1
  printf '%s\n%s\n\n' "$1" "$2"
}

# ---- 1. history ----
history_ci='\bsessions? [0-9]|\b(issue|pr|pull request)s?[ -]?#?[0-9]'
history_ci+='|\b(an?|the|our) (earlier|previous|former|older|old) (version|design|kernel|implementation|code|layout|scheme|approach|attempt|measurement|number)s?\b'
history_ci+='|\b(earlier|previous|old|older) (version|design|kernel|implementation|measurement)s?\b'
history_ci+='|\bsupersed(e|ed|es|ing)\b|\bformerly\b|\bpreviously\b|\buntil now\b|\bused to be\b'
history_ci+='|\bno longer (is|are|does|do|uses?|has|have|holds?|runs?|needs?|takes?|reads?)\b'
history_ci+='|\b(was|were|got|has been|have been) (replaced|removed|moved|renamed|rewritten|dropped|reverted)\b'
history_ci+='|\bnow (takes?|reads?|runs?|uses?|writes?|holds?|keeps?|stores?|saves?|goes|go|lives?|calls?)\b'
history_ci+='|\b(went|changed) from\b|\bas before\b|\b(bits|results|numbers) did not change\b|\bnot kept in the tree\b'
history_cs='(^|[^[:alnum:]])Before, '
history_files=()
for f in "${docs[@]}" "${sources[@]}"; do [ "$f" != "$self" ] && history_files+=("$f"); done
history="$({
  grep -nHiE "$history_ci" "${history_files[@]}"
  grep -nHE "$history_cs" "${history_files[@]}"
} | sort -t: -k1,1 -k2,2n -u | sed -E 's/^([^:]*:[0-9]+):/\1: /')"
report "History (say what the code does now and why; how it got there belongs in commit messages):" "$history"

# ---- 2. paths and 3. functions ----
identifiers="$(mktemp)"
files_list="$(mktemp)"
trap 'rm -f "$identifiers" "$files_list"' EXIT
cat "${code[@]}" | sed 's|//.*||' | grep -oE '[A-Za-z_][A-Za-z0-9_]*' | sort -u >"$identifiers"
printf '%s\n' "${all[@]}" >"$files_list"

# The text each check reads, as FILE<TAB>LINE<TAB>KIND<TAB>TEXT: KIND "md" for a Markdown line, "span"
# for an inline code span of a Markdown file (reported at the line where it opens), "fence" for a
# line of a fenced block, "comment" for the comment part of a source line.
extract() {
  awk -v OFS='\t' '
    FNR == 1 { fence = 0; open = 0 }
    FILENAME ~ /\.md$/ {
      if ($0 ~ /^[ \t]*```/) { fence = !fence; open = 0; print FILENAME, FNR, "fence", $0; next }
      print FILENAME, FNR, (fence ? "fence" : "md"), $0
      if (fence) next
      if ($0 ~ /^[ \t]*$/) { open = 0; next }
      rest = $0
      while ((i = index(rest, "`")) > 0) {
        if (open) { print FILENAME, start, "span", span substr(rest, 1, i - 1); open = 0 }
        else { open = 1; span = ""; start = FNR }
        rest = substr(rest, i + 1)
      }
      if (open) span = span rest " "
      next
    }
    FILENAME ~ /\.(h|cpp|cu|cuh)$/ {
      if ((i = index($0, "//")) > 0) print FILENAME, FNR, "comment", substr($0, i + 2)
      next
    }
    {  # shell and CMake: from a # that starts a word (not #!, $#, ${#...})
      if (FNR == 1 && $0 ~ /^#!/) next
      if (match($0, /(^|[ \t])#/)) print FILENAME, FNR, "comment", substr($0, RSTART + RLENGTH)
    }
  ' "$@"
}

references="$(extract "${docs[@]}" "${sources[@]}" | awk -F'\t' -v topdirs="$topdirs" -v files="$files_list" -v idents="$identifiers" '
  BEGIN {
    while ((getline f < idents) > 0) ident[f] = 1
    while ((getline f < files) > 0) {
      exists[f] = 1
      n = split(f, part, "/")
      d = ""
      for (k = 1; k < n; ++k) { d = d part[k] "/"; exists[d] = 1; exists[substr(d, 1, length(d) - 1)] = 1 }
      base = part[n]
      basename[base] = 1
    }
    pathre = "(" topdirs ")/[A-Za-z0-9_./-]*"
  }
  function bad(file, line, text, why) { printf "%s:%s: %s    <- %s\n", file, line, text, why }
  function clean(p) { sub(/[.,:;-]+$/, "", p); return p }
  function is_pattern(w) { return w ~ /[<>*{}$\[\]]/ }
  # Resolves a relative link target against dir; "" when it leaves the repository.
  function resolve(dir, target,    n, k, seg, out, m, p) {
    n = split((dir == "" ? "" : dir "/") target, seg, "/")
    m = 0
    for (k = 1; k <= n; ++k) {
      if (seg[k] == "" || seg[k] == ".") continue
      if (seg[k] == "..") { if (m == 0) return ""; --m; continue }
      out[++m] = seg[k]
    }
    p = ""
    for (k = 1; k <= m; ++k) p = p (k > 1 ? "/" : "") out[k]
    return p (target ~ /\/$/ ? "/" : "")
  }
  {
    file = $1; line = $2; kind = $3; text = $4
    for (k = 5; k <= NF; ++k) text = text "\t" $k
    if (kind == "span") {
      n = split(text, w, /[ \t(),;=]+/)
      for (k = 1; k <= n; ++k) {
        p = clean(w[k])  # those with an extension or a trailing slash are checked with the line
        if (p ~ ("^(" topdirs ")/") && !is_pattern(p) && p !~ /\/$/ && p !~ /\/[^\/]*\.[A-Za-z0-9]+$/ && !(p in exists))
          bad(file, line, "`" text "`", "no such path: " p)
      }
      rest = text
      while (match(rest, /[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*\(/)) {
        name = substr(rest, RSTART, RLENGTH - 1)
        rest = substr(rest, RSTART + RLENGTH)
        sub(/.*::/, "", name)
        if (!(name in ident)) needs[file SUBSEP line SUBSEP text SUBSEP name] = 1
      }
      next
    }
    # Paths with an extension or a trailing slash, in Markdown lines and comments.
    rest = text
    while (match(rest, "(^|[^A-Za-z0-9_./~-])" pathre)) {
      p = substr(rest, RSTART, RLENGTH)
      rest = substr(rest, RSTART + RLENGTH)
      sub(/^[^A-Za-z]/, "", p)
      p = clean(p)
      if ((p ~ /\/$/ || p ~ /\/[^\/]*\.[A-Za-z0-9]+$/) && !(p in exists)) bad(file, line, text, "no such path: " p)
    }
    # Outside the repository (the target of a Markdown link is resolved below).
    plain = text
    if (kind == "md") gsub(/\]\([^)]*\)/, "]", plain)
    if (plain ~ /(^|[^A-Za-z0-9_.])\.\.\/[A-Za-z_]/) bad(file, line, text, "points outside the repository")
    # Bare capitalised Markdown file names.
    rest = text
    while (match(rest, /(^|[^A-Za-z0-9_\/.-])[A-Z][A-Za-z_-]*\.md/)) {
      p = substr(rest, RSTART, RLENGTH)
      rest = substr(rest, RSTART + RLENGTH)
      sub(/^[^A-Z]/, "", p)
      if (!(p in basename)) bad(file, line, text, "no such file: " p)
    }
    # Markdown links (not in an indented code block).
    if (kind == "md" && text !~ /^(    |\t)/) {
      rest = text
      gsub(/`[^`]*`/, "", rest)
      sub(/`.*/, "", rest)
      dir = file; if (dir ~ /\//) sub(/\/[^\/]*$/, "", dir); else dir = ""
      while (match(rest, /\[[^]]*\]\([^)]+\)/)) {
        target = substr(rest, RSTART, RLENGTH)
        sub(/^\[[^]]*\]\(/, "", target)
        sub(/\)$/, "", target)
        rest = substr(rest, RSTART + RLENGTH)
        if (target ~ /^[a-z]+:/ || target ~ /^#/) continue
        sub(/#.*/, "", target)
        p = resolve(dir, target)
        if (p == "") bad(file, line, text, "link outside the repository: " target)
        else if (!(p in exists)) bad(file, line, text, "no such link target: " target)
      }
    }
  }
  END {
    for (key in needs) {
      split(key, got, SUBSEP)
      printf "%s:%s: `%s`    <- no function %s in the sources\n", got[1], got[2], got[3], got[4]
    }
  }
' | sort -t: -k1,1 -k2,2n | uniq)"
report "References (every path, link and function named must exist in the tree):" "$references"

exit $failed
