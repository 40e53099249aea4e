namespace HarnessServer.Policies;

/// <summary>
/// Lexical normalisation of a <c>path</c> argument against the session workspace, done before any glob sees it:
/// <c>src/../secrets/x</c> becomes <c>secrets/x</c>, <c>./a//b</c> becomes <c>a/b</c>. A path that leaves the
/// workspace (<c>../x</c>, an absolute path outside the workspace root) or contains a backslash or NUL (which other
/// layers might read differently) has no normal form. Symbolic links are the sandbox's concern, not this one's.
/// </summary>
internal static class WorkspacePath
{
    /// <summary>Linux's PATH_MAX; no longer path names a file.</summary>
    public const int MaxLength = 4096;

    /// <summary>
    /// Writes the normal form of <paramref name="path"/> into <paramref name="destination"/> (at least as long as
    /// the path) and returns its length, or -1 when the path escapes the workspace.
    /// </summary>
    public static int Normalize(ReadOnlySpan<char> path, ReadOnlySpan<char> workspaceRoot, Span<char> destination)
    {
        if (path.Length > MaxLength || path.IndexOfAny('\\', '\0') >= 0)
        {
            return -1;
        }

        if (path.Length == 0 || path[0] != '/')
        {
            return Segments(path, destination);
        }

        if (workspaceRoot.Length == 0 || workspaceRoot[0] != '/' || workspaceRoot.IndexOfAny('\\', '\0') >= 0)
        {
            return -1;
        }

        var length = Segments(path, destination);
        if (length < 0)
        {
            return -1;
        }

        Span<char> root = workspaceRoot.Length <= 512 ? stackalloc char[workspaceRoot.Length] : new char[workspaceRoot.Length];
        var rootLength = Segments(workspaceRoot, root);
        if (rootLength <= 0)
        {
            return -1;
        }

        var absolute = destination[..length];
        var rootPath = root[..rootLength];
        if (absolute.SequenceEqual(rootPath))
        {
            return 0;
        }

        if (absolute.Length > rootLength && absolute.StartsWith(rootPath) && absolute[rootLength] == '/')
        {
            absolute[(rootLength + 1)..].CopyTo(destination);
            return length - rootLength - 1;
        }

        return -1;
    }

    // Drops empty and '.' segments and applies '..'; a '..' with nothing left to drop escapes.
    private static int Segments(ReadOnlySpan<char> path, Span<char> destination)
    {
        var length = 0;
        while (path.Length > 0)
        {
            var slash = path.IndexOf('/');
            var segment = slash < 0 ? path : path[..slash];
            path = slash < 0 ? [] : path[(slash + 1)..];
            if (segment.Length == 0 || segment is ".")
            {
                continue;
            }

            if (segment is "..")
            {
                if (length == 0)
                {
                    return -1;
                }

                var previous = destination[..length].LastIndexOf('/');
                length = previous < 0 ? 0 : previous;
                continue;
            }

            if (length > 0)
            {
                destination[length++] = '/';
            }

            segment.CopyTo(destination[length..]);
            length += segment.Length;
        }

        return length;
    }
}
