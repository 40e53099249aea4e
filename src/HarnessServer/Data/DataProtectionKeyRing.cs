using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.Repositories;
using Microsoft.AspNetCore.DataProtection.XmlEncryption;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.Extensions.Options;
using Npgsql;

namespace HarnessServer.Data;

/// <summary>
/// One ASP.NET Core Data Protection key ring for every replica: the console's cookies and antiforgery tokens and the
/// upstream credentials are protected with keys stored in the database (<c>data_protection_keys</c>), so what one
/// replica protected another reads, and a restart logs nobody out. Each key is encrypted at rest with AES-256-GCM
/// under a key-encryption key kept outside the database (<see cref="KeyEncryptionKeyPath"/>), so a database dump
/// alone reveals no key.
/// </summary>
internal static class DataProtectionKeyRing
{
    public const string ApplicationName = "HarnessServer";

    /// <summary>
    /// <c>Harness:DataProtection:KeyEncryptionKeyPath</c>: a file of 32 random bytes (base64), the same on every replica
    /// (a Kubernetes Secret, like the audit signing key). Default: <c>data-protection.key</c> beside the audit signing key.
    /// </summary>
    public const string KeyEncryptionKeyPath = "Harness:DataProtection:KeyEncryptionKeyPath";

    public static WebApplicationBuilder AddHarnessDataProtection(this WebApplicationBuilder builder)
    {
        var configured = builder.Configuration[KeyEncryptionKeyPath];
        var beside = Path.GetDirectoryName(builder.Configuration["Harness:Audit:SigningKeyPath"] ?? ".data/audit-signing-key.pem") ?? "";
        var path = Path.Combine(builder.Environment.ContentRootPath, string.IsNullOrWhiteSpace(configured) ? Path.Combine(beside, "data-protection.key") : configured);

        builder.Services.AddSingleton(_ => KeyEncryptionKey.Load(path));
        // The discriminator is fixed: by default it is the content root, which differs between hosts.
        builder.Services.AddDataProtection().SetApplicationName(ApplicationName);
        builder.Services.AddSingleton<IConfigureOptions<KeyManagementOptions>>(services => new ConfigureOptions<KeyManagementOptions>(options =>
        {
            options.XmlRepository = new DatabaseXmlRepository(services.GetRequiredService<DatabaseSources>());
            options.XmlEncryptor = new KeyRingEncryptor(services.GetRequiredService<KeyEncryptionKey>());
        }));
        return builder;
    }
}

/// <summary>A key of the ring as stored: its XML, encrypted (<see cref="KeyRingEncryptor"/>). Shared by all tenants.</summary>
internal sealed class DataProtectionKeyRow
{
    public int Id { get; init; }
    public required string FriendlyName { get; init; }
    public required string Xml { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
}

internal sealed class DataProtectionKeyRowConfiguration : IEntityTypeConfiguration<DataProtectionKeyRow>
{
    public void Configure(EntityTypeBuilder<DataProtectionKeyRow> builder)
    {
        builder.ToTable("data_protection_keys");
        builder.HasKey(k => k.Id);
        builder.Property(k => k.FriendlyName).HasMaxLength(ColumnLimits.Identifier);
    }
}

/// <summary>The key ring's rows. Data Protection calls it synchronously, rarely (at start and when the ring refreshes).</summary>
internal sealed class DatabaseXmlRepository(DatabaseSources sources) : IXmlRepository
{
    public IReadOnlyCollection<XElement> GetAllElements()
    {
        using var command = sources.Application.CreateCommand("SELECT xml FROM data_protection_keys ORDER BY id");
        using var reader = command.ExecuteReader();
        var elements = new List<XElement>();
        while (reader.Read())
        {
            elements.Add(XElement.Parse(reader.GetString(0)));
        }

        return elements;
    }

    public void StoreElement(XElement element, string friendlyName)
    {
        using var command = sources.Application.CreateCommand("INSERT INTO data_protection_keys (friendly_name, xml, created_at) VALUES ($1, $2, now())");
        command.Parameters.Add(new NpgsqlParameter { Value = friendlyName });
        command.Parameters.Add(new NpgsqlParameter { Value = element.ToString(SaveOptions.DisableFormatting) });
        command.ExecuteNonQuery();
    }
}

/// <summary>The 32-byte key that encrypts the ring's keys at rest.</summary>
internal sealed class KeyEncryptionKey(byte[] key)
{
    internal byte[] Key { get; } = key;

    /// <summary>Loads the key (base64) at <paramref name="path"/>, creating it with mode 0600 when missing.</summary>
    public static KeyEncryptionKey Load(string path) => new(SecretKeyFile.LoadOrCreate(path, "Data Protection key-encryption key"));
}

/// <summary>Encrypts a key's XML with AES-256-GCM: <c>&lt;encryptedKey&gt;</c> holds base64 of nonce, tag and ciphertext.</summary>
internal sealed class KeyRingEncryptor(KeyEncryptionKey key) : IXmlEncryptor
{
    internal const int NonceSize = 12;
    internal const int TagSize = 16;
    internal static readonly byte[] Associated = Encoding.ASCII.GetBytes("HarnessServer.DataProtection.v1");

    public EncryptedXmlInfo Encrypt(XElement plaintextElement)
    {
        var plain = Encoding.UTF8.GetBytes(plaintextElement.ToString(SaveOptions.DisableFormatting));
        var sealedBox = new byte[NonceSize + TagSize + plain.Length];
        RandomNumberGenerator.Fill(sealedBox.AsSpan(0, NonceSize));
        using var aes = new AesGcm(key.Key, TagSize);
        aes.Encrypt(sealedBox.AsSpan(0, NonceSize), plain, sealedBox.AsSpan(NonceSize + TagSize), sealedBox.AsSpan(NonceSize, TagSize), Associated);
        return new EncryptedXmlInfo(new XElement("encryptedKey", new XAttribute("alg", "AES-256-GCM"), Convert.ToBase64String(sealedBox)), typeof(KeyRingDecryptor));
    }
}

/// <summary>Made by Data Protection through its <see cref="IServiceProvider"/> constructor.</summary>
internal sealed class KeyRingDecryptor(IServiceProvider services) : IXmlDecryptor
{
    public XElement Decrypt(XElement encryptedElement)
    {
        var sealedBox = Convert.FromBase64String(encryptedElement.Value);
        if (sealedBox.Length < KeyRingEncryptor.NonceSize + KeyRingEncryptor.TagSize)
        {
            throw new CryptographicException("A Data Protection key is stored truncated.");
        }

        var plain = new byte[sealedBox.Length - KeyRingEncryptor.NonceSize - KeyRingEncryptor.TagSize];
        using var aes = new AesGcm(services.GetRequiredService<KeyEncryptionKey>().Key, KeyRingEncryptor.TagSize);
        // A key encrypted under another key-encryption key fails here (AuthenticationTagMismatchException).
        aes.Decrypt(sealedBox.AsSpan(0, KeyRingEncryptor.NonceSize), sealedBox.AsSpan(KeyRingEncryptor.NonceSize + KeyRingEncryptor.TagSize),
            sealedBox.AsSpan(KeyRingEncryptor.NonceSize, KeyRingEncryptor.TagSize), plain, KeyRingEncryptor.Associated);
        return XElement.Parse(Encoding.UTF8.GetString(plain));
    }
}
