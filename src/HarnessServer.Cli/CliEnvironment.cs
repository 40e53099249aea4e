namespace HarnessServer.Cli;

/// <summary>
/// What the command line reads and writes outside its arguments: its output streams, environment variables, the
/// folder of its token cache and, for the tests, the handler its HTTP requests go through.
/// </summary>
public sealed record CliEnvironment(
    TextWriter Out,
    TextWriter Error,
    Func<string, string?> Variable,
    string ConfigDirectory,
    Func<HttpMessageHandler>? Handler = null)
{
    public static CliEnvironment FromProcess() => new(Console.Out, Console.Error, Environment.GetEnvironmentVariable, DefaultConfigDirectory());

    // $XDG_CONFIG_HOME/harness, else ~/.config/harness (the user's own config folder).
    private static string DefaultConfigDirectory()
    {
        var xdg = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME");
        var root = string.IsNullOrEmpty(xdg)
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config")
            : xdg;
        return Path.Combine(root, "harness");
    }

    internal HttpClient HttpClient(Uri baseAddress, TimeSpan timeout) =>
        new(Handler?.Invoke() ?? new SocketsHttpHandler(), disposeHandler: true) { BaseAddress = baseAddress, Timeout = timeout };
}
