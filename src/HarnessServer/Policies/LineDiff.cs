using System.Text;

namespace HarnessServer.Policies;

/// <summary>A minimal line diff (longest common subsequence) for policy history; policy files are small.</summary>
internal static class LineDiff
{
    private const int MaxLines = 5000;

    public static string Unified(string before, string after)
    {
        var a = before.Length == 0 ? [] : before.ReplaceLineEndings("\n").Split('\n');
        var b = after.ReplaceLineEndings("\n").Split('\n');
        if (a.Length > MaxLines || b.Length > MaxLines)
        {
            return $"(too large to diff: {a.Length} -> {b.Length} lines)";
        }

        var lcs = new int[a.Length + 1, b.Length + 1];
        for (var i = a.Length - 1; i >= 0; i--)
        {
            for (var j = b.Length - 1; j >= 0; j--)
            {
                lcs[i, j] = a[i] == b[j] ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);
            }
        }

        var diff = new StringBuilder();
        int x = 0, y = 0;
        while (x < a.Length || y < b.Length)
        {
            if (x < a.Length && y < b.Length && a[x] == b[y])
            {
                x++;
                y++;
            }
            else if (y < b.Length && (x == a.Length || lcs[x, y + 1] >= lcs[x + 1, y]))
            {
                diff.Append("+ ").Append(b[y++]).Append('\n');
            }
            else
            {
                diff.Append("- ").Append(a[x++]).Append('\n');
            }
        }

        return diff.ToString();
    }
}
