// Run at build by HarnessServer.Client.csproj (a file-based app: `dotnet run KeepJsonOperations.cs -- in out`).
// NSwag reads and writes every body as JSON, so the operations whose body or success is not JSON (policy files as
// YAML or JSON text, the audit export's JSON Lines, the event stream) are left out of its input; HarnessClient.Text.cs
// covers them by hand over the same HttpClient.
using System.Text.Json.Nodes;

var document = JsonNode.Parse(File.ReadAllText(args[0]))!;
foreach (var (_, item) in document["paths"]!.AsObject().ToList())
{
    foreach (var (method, operation) in item!.AsObject().ToList())
    {
        var success = operation!["responses"]!.AsObject().FirstOrDefault(r => r.Key.StartsWith('2')).Value;
        if (!IsJson(operation["requestBody"]?["content"]) || (success is not null && !IsJson(success["content"])))
        {
            item.AsObject().Remove(method);
        }
    }
}

File.WriteAllText(args[1], document.ToJsonString());

static bool IsJson(JsonNode? content) => content is null || content.AsObject().All(c => c.Key == "application/json");
