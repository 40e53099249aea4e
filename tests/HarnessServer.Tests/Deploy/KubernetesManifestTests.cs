using HarnessServer.Tests.Infrastructure;
using YamlDotNet.RepresentationModel;

namespace HarnessServer.Tests.Deploy;

/// <summary>
/// The manifests under <c>deploy/kubernetes</c> are parsed and held to what the server needs and what a security
/// review asks of a pod: readiness on <c>/readyz</c>, shared workspaces, no root, no capabilities, a read-only root,
/// the owner's database login in the migration Job only, disruption and autoscaling bounds, a network policy.
/// </summary>
public sealed class KubernetesManifestTests
{
    private static readonly string Folder = Path.Combine(HarnessApplication.RepositoryRoot, "deploy", "kubernetes");

    private static readonly List<YamlMappingNode> Objects = Load();

    [Fact]
    public void The_kustomization_lists_every_manifest_and_every_object_has_a_kind_and_name()
    {
        var kustomization = (YamlMappingNode)new YamlStreamOf(Path.Combine(Folder, "kustomization.yaml")).Documents[0].RootNode;
        var listed = Sequence(kustomization, "resources").Select(Scalar).Order().ToArray();
        var files = Directory.GetFiles(Folder, "*.yaml").Select(Path.GetFileName).Where(f => f != "kustomization.yaml").Order().ToArray();

        Assert.Equal(files, listed);
        Assert.All(Objects, o => Assert.False(string.IsNullOrEmpty(Text(o, "kind")) || string.IsNullOrEmpty(Text(o, "metadata.name"))));
    }

    [Fact]
    public void The_server_is_ready_on_readyz_and_live_on_healthz_on_its_own_port()
    {
        var container = ServerContainer();
        var port = Sequence(container, "ports").Cast<YamlMappingNode>().Single();

        Assert.Equal("/readyz", Text(container, "readinessProbe.httpGet.path"));
        Assert.Equal("/healthz", Text(container, "livenessProbe.httpGet.path"));
        Assert.Equal(Text(port, "name"), Text(container, "readinessProbe.httpGet.port"));
        Assert.Equal($"http://0.0.0.0:{Text(port, "containerPort")}", ConfigValue("Urls"));
    }

    [Fact]
    public void The_server_runs_without_root_capabilities_escalation_or_a_writable_root()
    {
        var pod = Get(Deployment(), "spec.template.spec");
        var container = ServerContainer();

        Assert.Equal("false", Text(pod, "hostUsers"));
        Assert.Equal("true", Text(pod, "securityContext.runAsNonRoot"));
        Assert.NotEqual("0", Text(pod, "securityContext.runAsUser"));
        Assert.Equal("false", Text(pod, "automountServiceAccountToken"));
        Assert.Equal("false", Text(container, "securityContext.allowPrivilegeEscalation"));
        Assert.Equal("true", Text(container, "securityContext.readOnlyRootFilesystem"));
        Assert.Equal(["ALL"], Sequence(container, "securityContext.capabilities.drop").Select(Scalar));
        Assert.False(Get(container, "securityContext.capabilities").Children.ContainsKey("add"));
        Assert.DoesNotContain(":latest", Text(container, "image"));
        Assert.Contains(":", Text(container, "image"));
    }

    [Fact]
    public void Every_writable_path_is_a_volume_and_workspaces_are_shared_by_every_replica()
    {
        var pod = Get(Deployment(), "spec.template.spec");
        var mounts = Sequence(ServerContainer(), "volumeMounts").Cast<YamlMappingNode>().ToDictionary(m => Text(m, "mountPath"));
        var volumes = Sequence(pod, "volumes").Cast<YamlMappingNode>().ToDictionary(v => Text(v, "name"));

        var workspaces = mounts[ConfigValue("Harness__WorkspacesPath")];
        var claim = Text(volumes[Text(workspaces, "name")], "persistentVolumeClaim.claimName");
        var pvc = Objects.Single(o => Text(o, "kind") == "PersistentVolumeClaim" && Text(o, "metadata.name") == claim);
        Assert.Equal(["ReadWriteMany"], Sequence(pvc, "spec.accessModes").Select(Scalar));
        Assert.True(volumes[Text(mounts["/tmp"], "name")].Children.ContainsKey("emptyDir"));
        Assert.Equal("true", Text(mounts[ConfigValue("Harness__PoliciesPath")], "readOnly"));
        var key = mounts[Path.GetDirectoryName(ConfigValue("Harness__Audit__SigningKeyPath"))!];
        Assert.Equal("true", Text(key, "readOnly"));
        Assert.Equal("0400", Text(volumes[Text(key, "name")], "secret.defaultMode"));
    }

    [Fact]
    public void Only_the_migration_job_holds_the_owners_login_and_serving_pods_never_migrate()
    {
        var job = Objects.Single(o => Text(o, "kind") == "Job");
        var jobContainer = (YamlMappingNode)Sequence(job, "spec.template.spec.containers")[0];
        var owner = SecretOf(jobContainer, "ConnectionStrings__HarnessMigrations");

        Assert.Equal(["--migrate"], Sequence(jobContainer, "args").Select(Scalar));
        Assert.Equal("false", ConfigValue("Harness__MigrateOnStart"));
        Assert.Null(SecretOf(ServerContainer(), "ConnectionStrings__HarnessMigrations"));
        Assert.NotNull(SecretOf(ServerContainer(), "ConnectionStrings__Harness"));
        var mentions = Objects.Where(o => o != job && Mentions(o, owner!)).Select(o => Text(o, "metadata.name")).ToArray();
        Assert.Empty(mentions);
    }

    [Fact]
    public void Disruptions_and_autoscaling_keep_a_replica_serving_and_select_the_servers_pods()
    {
        var labels = Get(Deployment(), "spec.template.metadata.labels");
        var pdb = Objects.Single(o => Text(o, "kind") == "PodDisruptionBudget");
        var hpa = Objects.Single(o => Text(o, "kind") == "HorizontalPodAutoscaler");
        var service = Objects.Single(o => Text(o, "kind") == "Service");
        var policy = Objects.Single(o => Text(o, "kind") == "NetworkPolicy" && Text(o, "metadata.name") == Text(Deployment(), "metadata.name"));

        Assert.True(Selects(Get(pdb, "spec.selector.matchLabels"), labels));
        Assert.True(int.Parse(Text(pdb, "spec.minAvailable")) >= 1);
        Assert.Equal(Text(Deployment(), "metadata.name"), Text(hpa, "spec.scaleTargetRef.name"));
        Assert.True(int.Parse(Text(hpa, "spec.minReplicas")) >= 2);
        Assert.Equal("0", Text(Deployment(), "spec.strategy.rollingUpdate.maxUnavailable"));
        Assert.True(Selects(Get(service, "spec.selector"), labels));
        Assert.True(Selects(Get(policy, "spec.podSelector.matchLabels"), labels));
        Assert.Equal(["Ingress", "Egress"], Sequence(policy, "spec.policyTypes").Select(Scalar));
    }

    private static List<YamlMappingNode> Load() =>
        Directory.GetFiles(Folder, "*.yaml").Where(f => Path.GetFileName(f) != "kustomization.yaml")
            .SelectMany(f => new YamlStreamOf(f).Documents).Select(d => (YamlMappingNode)d.RootNode).ToList();

    private static YamlMappingNode Deployment() => Objects.Single(o => Text(o, "kind") == "Deployment");

    private static YamlMappingNode ServerContainer() => (YamlMappingNode)Sequence(Deployment(), "spec.template.spec.containers").Single();

    private static string ConfigValue(string key) =>
        Text(Objects.Single(o => Text(o, "kind") == "ConfigMap" && Text(o, "metadata.name") == "harness-config"), $"data.{key}");

    private static string? SecretOf(YamlMappingNode container, string variable) =>
        Sequence(container, "env").Cast<YamlMappingNode>()
            .Where(e => Text(e, "name") == variable)
            .Select(e => Text(e, "valueFrom.secretKeyRef.name"))
            .SingleOrDefault();

    private static bool Selects(YamlMappingNode selector, YamlMappingNode labels) =>
        selector.Children.All(c => labels.Children.TryGetValue(c.Key, out var value) && Scalar(value) == Scalar(c.Value));

    private static bool Mentions(YamlNode node, string text) => node switch
    {
        YamlScalarNode scalar => scalar.Value == text,
        YamlMappingNode mapping => mapping.Children.Any(c => Mentions(c.Key, text) || Mentions(c.Value, text)),
        YamlSequenceNode sequence => sequence.Children.Any(c => Mentions(c, text)),
        _ => false,
    };

    private static YamlMappingNode Get(YamlMappingNode node, string path) => (YamlMappingNode)Node(node, path)!;

    private static YamlSequenceNode Sequence(YamlMappingNode node, string path) => (YamlSequenceNode)Node(node, path)!;

    private static string Text(YamlMappingNode node, string path) => Node(node, path) is YamlScalarNode s ? s.Value ?? "" : Node(node, path) is null ? "" : "(node)";

    private static string Scalar(YamlNode node) => ((YamlScalarNode)node).Value ?? "";

    private static YamlNode? Node(YamlMappingNode node, string path)
    {
        YamlNode? current = node;
        foreach (var part in path.Split('.'))
        {
            if (current is not YamlMappingNode mapping || !mapping.Children.TryGetValue(new YamlScalarNode(part), out current))
            {
                return null;
            }
        }

        return current;
    }

    private sealed class YamlStreamOf : YamlStream
    {
        public YamlStreamOf(string path)
        {
            using var reader = File.OpenText(path);
            Load(reader);
        }
    }
}
