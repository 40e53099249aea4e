using HarnessServer.Policies;

namespace HarnessServer.Sandbox;

internal sealed partial class Workspace
{
    /// <summary>Most paths one glob word expands to; past it the word is passed literally.</summary>
    public const int MaxGlobMatches = 1000;

    /// <summary>
    /// Expands one shell glob word the way <c>sh</c> would inside the sandbox, for <c>shell.exec</c> lines that are
    /// decided on what they will run: <paramref name="pattern"/> is relative to <paramref name="directory"/> (a
    /// workspace-relative folder, <c>""</c> for the root). <c>*</c>, <c>?</c> and <c>[...]</c> match within one name,
    /// not a leading dot; matches are sorted by code point (the sandbox runs in <c>C.UTF-8</c>). Links are never
    /// followed (a link to a folder is not descended into), and every folder is opened confined beneath the
    /// workspace. Null when the word is to be passed literally: nothing matches, more than
    /// <see cref="MaxGlobMatches"/> do, or the pattern has <c>..</c> or a class the harness does not read.
    /// </summary>
    public IReadOnlyList<string>? Glob(string directory, string pattern)
    {
        var segments = pattern.Split('/');
        List<(string Written, string Relative)> found = [("", directory)];
        for (var k = 0; k < segments.Length; k++)
        {
            var segment = segments[k];
            var last = k == segments.Length - 1;
            if (segment is "..")
            {
                return null;
            }

            if (segment.AsSpan().IndexOfAny('*', '?', '[') < 0)
            {
                found = [.. found.Select(f => (Written(f.Written, segment, k), Relative(f.Relative, segment)))];
                continue;
            }

            if (!PolicyGlob.TryParse(segment, out var glob, out _))
            {
                return null;
            }

            var next = new List<(string, string)>();
            foreach (var (written, relative) in found)
            {
                List<(string Name, byte Type)> entries;
                try
                {
                    using var folder = OpenDirectory(relative, relative);
                    entries = ReadEntries(folder);
                }
                catch (SandboxException)
                {
                    continue;
                }

                foreach (var (name, type) in entries)
                {
                    if ((name[0] == '.' && segment[0] != '.') || !glob.IsMatch(name) || (!last && type != Libc.DT_DIR))
                    {
                        continue;
                    }

                    next.Add((Written(written, name, k), Relative(relative, name)));
                    if (next.Count > MaxGlobMatches)
                    {
                        return null;
                    }
                }
            }

            found = next;
        }

        // A literal last segment names a path that must exist, as it must for the shell to keep the match.
        var matches = found
            .Where(f => segments[^1].AsSpan().IndexOfAny('*', '?', '[') >= 0 || Exists(f.Relative))
            .Select(f => f.Written)
            .Order(StringComparer.Ordinal)
            .ToList();
        return matches.Count == 0 ? null : matches;
    }

    private static string Written(string prefix, string segment, int index) => index == 0 ? segment : $"{prefix}/{segment}";

    private static string Relative(string prefix, string segment) =>
        segment is "" or "." ? prefix : prefix.Length == 0 ? segment : $"{prefix}/{segment}";

    private bool Exists(string relative)
    {
        var fd = Libc.Openat2(_root, relative.Length == 0 ? "." : relative, Libc.O_PATH | Libc.O_CLOEXEC | Libc.O_NOFOLLOW, 0, Confined);
        if (fd < 0)
        {
            return false;
        }

        new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true).Dispose();
        return true;
    }
}
