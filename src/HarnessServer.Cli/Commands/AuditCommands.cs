using System.CommandLine;
using System.Security.Cryptography;
using System.Text.Json;
using HarnessServer.Audit;

namespace HarnessServer.Cli.Commands;

/// <summary>The checkpoint file <c>audit export</c> writes beside an export: the signed head it stops at, and the key.</summary>
internal sealed record CheckpointFile(AuditCheckpoint Checkpoint, PublicKeyFile PublicKey);

internal sealed record PublicKeyFile(string KeyId, string Algorithm, string Spki, string Pem);

internal static class AuditCommands
{
    public static Command Audit(CliEnvironment environment) => new("audit", "Export the audit trail, and verify an export offline.")
    {
        Export(environment),
        Verify(environment),
    };

    private static Command Export(CliEnvironment environment)
    {
        var output = new Option<FileInfo>("--output", "-o") { Description = "The export file (JSON Lines); FILE.checkpoint.json is written beside it.", Required = true };
        var command = new Command("export", "Sign a checkpoint of the tenant's head now and export the chain up to it (auditors).") { output };
        command.SetAction((parsed, ct) => HarnessCli.WithClientAsync(parsed, environment, ct, async c =>
        {
            var file = parsed.GetValue(output)!;
            // Signed first, exported up to it: the export ends exactly at a signed head, whatever is appended meanwhile.
            var signed = await c.Client.CreateAuditCheckpointAsync(ct);
            var page = await c.Client.GetAuditCheckpointsAsync(null, 1, ct);
            var temporary = file.FullName + ".partial";
            await using (var stream = File.Create(temporary))
            {
                await c.Client.ExportAuditAsync(1, signed.Seq, stream, ct);
            }

            File.Move(temporary, file.FullName, overwrite: true);
            var checkpoint = new CheckpointFile(
                new AuditCheckpoint(signed.Tenant, signed.Seq, signed.Hash, signed.At, signed.KeyId, signed.Signature),
                new PublicKeyFile(page.PublicKey.KeyId, page.PublicKey.Algorithm, page.PublicKey.Spki, page.PublicKey.Pem));
            var checkpointPath = file.FullName + ".checkpoint.json";
            await File.WriteAllTextAsync(checkpointPath, JsonSerializer.Serialize(checkpoint, CliJson.Options), ct);
            c.Print(new { export = file.FullName, checkpoint = checkpointPath, seq = signed.Seq, hash = signed.Hash }, o =>
                o.WriteLine($"Exported seq 1..{signed.Seq} of tenant {signed.Tenant} to {file.FullName}; signed checkpoint in {checkpointPath}."));
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Verify(CliEnvironment environment)
    {
        var export = new Argument<FileInfo>("export") { Description = "The export (JSON Lines from seq 1)." };
        var checkpointOption = new Option<FileInfo?>("--checkpoint")
        {
            Description = "A signed checkpoint: the file audit export wrote, a line of the server's anchor file, or GET /v1/audit/checkpoints' answer.",
        };
        var keyOption = new Option<FileInfo?>("--key") { Description = "The server's checkpoint public key (PEM), pinned out of band; default: the key in the checkpoint file." };
        var command = new Command("verify", "Verify an export offline, with no server: every hash and link, and the signed checkpoint.") { export, checkpointOption, keyOption };
        command.SetAction(async (parsed, ct) =>
        {
            var json = parsed.GetValue(HarnessCli.Json);
            try
            {
                var (checkpoints, fileKeys) = ReadCheckpoints(parsed.GetValue(checkpointOption));
                var keys = parsed.GetValue(keyOption) is { } pem ? [ReadPem(pem)] : fileKeys;
                if (checkpoints.Count == 0)
                {
                    environment.Error.WriteLine("warning: no checkpoint given: the links and hashes are checked, but a tail cut from the chain is not noticed.");
                }
                else if (parsed.GetValue(keyOption) is null)
                {
                    environment.Error.WriteLine("warning: the key is the one in the checkpoint file; pin the server's key with --key.");
                }

                using var reader = parsed.GetValue(export)!.OpenText();
                var result = await AuditExportVerifier.VerifyAsync(reader, checkpoints, keys, ct);
                if (json)
                {
                    CliJson.Write(environment.Out, result);
                }
                else if (result.Valid)
                {
                    environment.Out.WriteLine($"OK: {result.Checked} events verified, head seq {result.HeadSeq} ({result.HeadHash})" +
                        (result.Checkpoint is { } reached ? $", signed checkpoint at seq {reached.Seq} (key {reached.KeyId})." : "."));
                }
                else
                {
                    environment.Out.WriteLine($"FAILED at seq {result.FirstInvalidSeq}: {result.Reason}");
                }

                return result.Valid ? ExitCodes.Ok : ExitCodes.NotVerified;
            }
            catch (CliException e)
            {
                environment.Error.WriteLine($"error: {e.Message}");
                return e.ExitCode;
            }
            catch (IOException e)
            {
                environment.Error.WriteLine($"error: {e.Message}");
                return ExitCodes.Failed;
            }
        });
        return command;
    }

    private static (List<AuditCheckpoint> Checkpoints, List<byte[]> Keys) ReadCheckpoints(FileInfo? file)
    {
        if (file is null)
        {
            return ([], []);
        }

        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(file.FullName));
            var root = document.RootElement;
            var keys = new List<byte[]>();
            if (root.TryGetProperty("publicKey", out var key) && key.TryGetProperty("spki", out var spki))
            {
                keys.Add(Convert.FromBase64String(spki.GetString()!));
            }

            if (root.TryGetProperty("retiredKeys", out var retired))
            {
                keys.AddRange(retired.EnumerateArray().Select(k => Convert.FromBase64String(k.GetProperty("spki").GetString()!)));
            }

            var checkpoints = root.TryGetProperty("checkpoint", out var one) ? [one]
                : root.TryGetProperty("checkpoints", out var many) ? many.EnumerateArray().ToList()
                : [root];
            return (checkpoints.Select(c => c.Deserialize<AuditCheckpoint>(CliJson.Options)
                ?? throw new CliException($"{file.Name} holds an empty checkpoint.")).ToList(), keys);
        }
        catch (Exception e) when (e is JsonException or FormatException or KeyNotFoundException or InvalidOperationException)
        {
            throw new CliException($"{file.Name} is not a signed checkpoint: {e.Message}");
        }
    }

    private static byte[] ReadPem(FileInfo file)
    {
        try
        {
            using var key = ECDsa.Create();
            key.ImportFromPem(File.ReadAllText(file.FullName));
            return key.ExportSubjectPublicKeyInfo();
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            throw new CliException($"{file.Name} is not an EC public key in PEM: {e.Message}");
        }
    }
}
