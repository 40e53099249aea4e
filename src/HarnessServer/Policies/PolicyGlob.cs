using System.Diagnostics.CodeAnalysis;

namespace HarnessServer.Policies;

/// <summary>
/// A compiled glob over a tool name or an argument value. Syntax: <c>*</c> any run of characters within one path
/// segment, <c>**</c> any run across segments (<c>**/</c> also matches no directory at all), <c>?</c> one character,
/// <c>[abc]</c>, <c>[a-z]</c>, <c>[!abc]</c> or <c>[^abc]</c> one character of (or not of) a set, <c>\x</c> the
/// literal character x. Invalid: an empty pattern, three or more <c>*</c> in a row, an unbalanced <c>[</c> or
/// <c>]</c>, an empty or reversed class, a class containing <c>/</c>, a trailing lone <c>\</c>, and patterns longer
/// than <see cref="MaxLength"/>. Matching is ordinal and case-sensitive.
/// </summary>
/// <remarks>
/// In "segment" mode (<c>crossesSlash = false</c>) <c>*</c>, <c>?</c> and classes never match <c>/</c>. Shell
/// command matchers use <c>crossesSlash = true</c>, where every wildcard matches any character. Matching runs a
/// small NFA over stack buffers, so it neither backtracks nor allocates.
/// </remarks>
internal sealed class PolicyGlob
{
    // Matching costs text length x pattern length; a short cap keeps a hostile argument from buying CPU time.
    public const int MaxLength = 256;

    private static readonly System.Buffers.SearchValues<char> Specials = System.Buffers.SearchValues.Create("\\*?[]");

    private enum Shape : byte
    {
        Literal,
        PrefixThenStar,
        PrefixThenDoubleStar,
        General,
    }

    private enum TokenKind : byte
    {
        Literal,
        One,
        Class,
        Star,
        DoubleStar,
        AnyDirectories,
    }

    private readonly record struct Token(TokenKind Kind, char Char = '\0', int ClassStart = 0, int ClassCount = 0, bool Negated = false);

    private readonly Shape _shape;
    private readonly string _literal;
    private readonly Token[] _tokens;
    private readonly char[] _ranges;

    private PolicyGlob(string pattern, Shape shape, string literal, Token[] tokens, char[] ranges)
    {
        Pattern = pattern;
        _shape = shape;
        _literal = literal;
        _tokens = tokens;
        _ranges = ranges;
    }

    public string Pattern { get; }

    /// <summary>True when the pattern has no wildcard, so it can be looked up by exact name.</summary>
    public bool IsLiteral => _shape == Shape.Literal;

    /// <summary>The exact text a literal pattern matches (the pattern with its escapes removed).</summary>
    public string LiteralText => _literal;

    public static PolicyGlob Parse(string pattern) =>
        TryParse(pattern, out var glob, out var error) ? glob : throw new ArgumentException(error, nameof(pattern));

    public static bool TryParse(string pattern, [NotNullWhen(true)] out PolicyGlob? glob, [NotNullWhen(false)] out string? error)
    {
        glob = null;
        if (string.IsNullOrEmpty(pattern))
        {
            error = "empty glob: use \"*\" (one segment) or \"**\" (anything) to match every value";
            return false;
        }

        if (pattern.Length > MaxLength)
        {
            error = $"glob is {pattern.Length} characters long; the limit is {MaxLength}";
            return false;
        }

        // Most globs are plain names or "prefix*"; recognising them up front keeps compiling 10,000 rules cheap.
        var special = pattern.AsSpan().IndexOfAny(Specials);
        if (special < 0)
        {
            glob = new PolicyGlob(pattern, Shape.Literal, pattern, [], []);
            error = null;
            return true;
        }

        if (special == pattern.Length - 1 && pattern[special] == '*')
        {
            glob = new PolicyGlob(pattern, Shape.PrefixThenStar, pattern[..special], [], []);
            error = null;
            return true;
        }

        if (special == pattern.Length - 2 && pattern.EndsWith("**", StringComparison.Ordinal))
        {
            glob = new PolicyGlob(pattern, Shape.PrefixThenDoubleStar, pattern[..special], [], []);
            error = null;
            return true;
        }

        var tokens = new List<Token>(pattern.Length);
        var ranges = new List<char>();
        var literal = new System.Text.StringBuilder(pattern.Length);
        for (var i = 0; i < pattern.Length;)
        {
            var c = pattern[i];
            switch (c)
            {
                case '\\':
                    if (i + 1 >= pattern.Length)
                    {
                        error = $"glob \"{pattern}\" ends with a lone '\\': escape a backslash as '\\\\'";
                        return false;
                    }

                    tokens.Add(new Token(TokenKind.Literal, pattern[i + 1]));
                    literal.Append(pattern[i + 1]);
                    i += 2;
                    break;
                case '*':
                    var run = 1;
                    while (i + run < pattern.Length && pattern[i + run] == '*')
                    {
                        run++;
                    }

                    if (run > 2)
                    {
                        error = $"glob \"{pattern}\" has {run} '*' in a row at character {i + 1}: use '*' (within one segment) or '**' (across segments)";
                        return false;
                    }

                    if (run == 1)
                    {
                        tokens.Add(new Token(TokenKind.Star));
                        i++;
                    }
                    else if ((i == 0 || pattern[i - 1] == '/') && i + 2 < pattern.Length && pattern[i + 2] == '/')
                    {
                        tokens.Add(new Token(TokenKind.AnyDirectories));
                        i += 3;
                    }
                    else
                    {
                        tokens.Add(new Token(TokenKind.DoubleStar));
                        i += 2;
                    }

                    break;
                case '?':
                    tokens.Add(new Token(TokenKind.One));
                    i++;
                    break;
                case '[':
                    if (!TryParseClass(pattern, i, ranges, out var token, out var next, out error))
                    {
                        return false;
                    }

                    tokens.Add(token);
                    i = next;
                    break;
                case ']':
                    error = $"glob \"{pattern}\" has an unbalanced ']' at character {i + 1}: escape it as '\\]' to match it literally";
                    return false;
                default:
                    tokens.Add(new Token(TokenKind.Literal, c));
                    literal.Append(c);
                    i++;
                    break;
            }
        }

        var allLiteral = tokens.TrueForAll(t => t.Kind == TokenKind.Literal);
        var literalPrefix = tokens.Count > 0 && tokens.Take(tokens.Count - 1).All(t => t.Kind == TokenKind.Literal);
        var shape = allLiteral ? Shape.Literal
            : literalPrefix && tokens[^1].Kind == TokenKind.Star ? Shape.PrefixThenStar
            : literalPrefix && tokens[^1].Kind == TokenKind.DoubleStar ? Shape.PrefixThenDoubleStar
            : Shape.General;
        glob = new PolicyGlob(pattern, shape, shape == Shape.General ? "" : literal.ToString(), [.. tokens], [.. ranges]);
        error = null;
        return true;
    }

    private static bool TryParseClass(string pattern, int open, List<char> ranges, out Token token, out int next, [NotNullWhen(false)] out string? error)
    {
        token = default;
        next = open;
        var i = open + 1;
        var negated = i < pattern.Length && (pattern[i] == '!' || pattern[i] == '^');
        if (negated)
        {
            i++;
        }

        var start = ranges.Count;
        while (i < pattern.Length && pattern[i] != ']')
        {
            var lo = pattern[i];
            var hi = lo;
            if (i + 2 < pattern.Length && pattern[i + 1] == '-' && pattern[i + 2] != ']')
            {
                hi = pattern[i + 2];
                i += 3;
            }
            else
            {
                i++;
            }

            if (lo == '/' || hi == '/' || (lo < '/' && hi > '/'))
            {
                error = $"glob \"{pattern}\" has a character class at character {open + 1} that includes '/': a class matches one character within a segment";
                return false;
            }

            if (lo > hi)
            {
                error = $"glob \"{pattern}\" has a reversed range '{lo}-{hi}' at character {open + 1}";
                return false;
            }

            ranges.Add(lo);
            ranges.Add(hi);
        }

        if (i >= pattern.Length)
        {
            error = $"glob \"{pattern}\" has an unbalanced '[' at character {open + 1}: a character class needs a closing ']' (escape it as '\\[' to match it literally)";
            return false;
        }

        if (ranges.Count == start)
        {
            error = $"glob \"{pattern}\" has an empty character class at character {open + 1}";
            return false;
        }

        token = new Token(TokenKind.Class, ClassStart: start, ClassCount: (ranges.Count - start) / 2, Negated: negated);
        next = i + 1;
        error = null;
        return true;
    }

    /// <summary>Whether <paramref name="text"/> matches; <paramref name="crossesSlash"/> lets every wildcard match '/'.</summary>
    public bool IsMatch(ReadOnlySpan<char> text, bool crossesSlash = false) => _shape switch
    {
        Shape.Literal => text.SequenceEqual(_literal),
        Shape.PrefixThenDoubleStar => text.StartsWith(_literal, StringComparison.Ordinal),
        Shape.PrefixThenStar => text.StartsWith(_literal, StringComparison.Ordinal)
            && (crossesSlash || !text[_literal.Length..].Contains('/')),
        _ => MatchGeneral(text, crossesSlash),
    };

    /// <summary>
    /// Whether <paramref name="text"/> matches with the characters from <paramref name="literalFrom"/> to
    /// <paramref name="literalTo"/> matched by literal characters of the pattern, never by a wildcard: the rule
    /// spells that word out (a shell rule naming a code-running word).
    /// </summary>
    public bool IsMatchSpelling(ReadOnlySpan<char> text, bool crossesSlash, int literalFrom, int literalTo) => _shape switch
    {
        Shape.Literal => text.SequenceEqual(_literal),
        Shape.PrefixThenDoubleStar or Shape.PrefixThenStar => _literal.Length >= literalTo && IsMatch(text, crossesSlash),
        _ => MatchGeneral(text, crossesSlash, literalFrom, literalTo),
    };

    private bool MatchGeneral(ReadOnlySpan<char> text, bool crossesSlash, int literalFrom = 0, int literalTo = 0)
    {
        var tokens = _tokens;
        var m = tokens.Length;
        Span<bool> current = stackalloc bool[m + 1];
        Span<bool> next = stackalloc bool[m + 1];
        current[0] = true;
        FollowEmptyMatches(current);
        for (var at = 0; at < text.Length; at++)
        {
            var c = text[at];
            next.Clear();
            var alive = false;
            var spelled = at >= literalFrom && at < literalTo;
            var ordinary = !spelled && (crossesSlash || c != '/');
            for (var i = 0; i < m; i++)
            {
                if (!current[i])
                {
                    continue;
                }

                var token = tokens[i];
                switch (token.Kind)
                {
                    case TokenKind.Literal when c == token.Char:
                    case TokenKind.One when ordinary:
                        next[i + 1] = alive = true;
                        break;
                    case TokenKind.Class when ordinary && InClass(token, c):
                        next[i + 1] = alive = true;
                        break;
                    case TokenKind.Star when ordinary:
                    case TokenKind.DoubleStar when !spelled:
                        next[i] = alive = true;
                        break;
                    case TokenKind.AnyDirectories when !spelled:
                        next[i] = alive = true;
                        if (c == '/')
                        {
                            next[i + 1] = true;
                        }

                        break;
                }
            }

            if (!alive)
            {
                return false;
            }

            FollowEmptyMatches(next);
            var swap = current;
            current = next;
            next = swap;
        }

        return current[m];
    }

    // Star-like tokens may match nothing, so being before one also means being after it.
    private void FollowEmptyMatches(Span<bool> states)
    {
        for (var i = 0; i < _tokens.Length; i++)
        {
            if (states[i] && _tokens[i].Kind is TokenKind.Star or TokenKind.DoubleStar or TokenKind.AnyDirectories)
            {
                states[i + 1] = true;
            }
        }
    }

    private bool InClass(Token token, char c)
    {
        var found = false;
        for (var r = 0; r < token.ClassCount; r++)
        {
            var at = token.ClassStart + (r * 2);
            if (c >= _ranges[at] && c <= _ranges[at + 1])
            {
                found = true;
                break;
            }
        }

        return found != token.Negated;
    }

    public override string ToString() => Pattern;
}
