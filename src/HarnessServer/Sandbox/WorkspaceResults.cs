namespace HarnessServer.Sandbox;

/// <summary>
/// The result of <c>fs.read</c>: the file's text and its size in bytes; a file that is not NUL-free UTF-8 (a binary
/// file) has its bytes as base64 in <see cref="Content"/> and <see cref="Encoding"/> <c>base64</c> (absent for text).
/// </summary>
internal sealed record FileContent(string Content, long Size, string? Encoding = null);

/// <summary>The result of <c>fs.write</c>: the normalised workspace-relative path and the bytes written.</summary>
internal sealed record FileWritten(string Path, long Size);

/// <summary>The result of <c>fs.list</c>, sorted by name; <see cref="Truncated"/> past <c>MaxListEntries</c>.</summary>
internal sealed record DirectoryListing(IReadOnlyList<DirectoryEntry> Entries, bool Truncated);

/// <summary>One entry; <see cref="Kind"/> is <c>file</c>, <c>directory</c>, <c>symlink</c> or <c>other</c>.</summary>
internal sealed record DirectoryEntry(string Name, string Kind, long Size);

/// <summary>The result of <c>fs.search</c>; <see cref="Truncated"/> when a match, file or time bound stopped it.</summary>
internal sealed record SearchResults(IReadOnlyList<SearchMatch> Matches, bool Truncated);

/// <summary>One matching line: workspace-relative path, 1-based line number, the line (cut at 500 characters).</summary>
internal sealed record SearchMatch(string Path, int Line, string Text);
