namespace HarnessServer.Tests.Memory;

/// <summary>
/// Questions and the notes that answer them, worded apart (paraphrases, synonyms, a question and its answer), so
/// that shared words rarely give the answer away; and 400 distractors on unrelated subjects.
/// </summary>
internal static class SemanticCorpus
{
    public static readonly (string Query, string Answer)[] Pairs =
    [
        ("How do I reset my password?", "Steps to recover account credentials: open the sign-in page and choose 'forgot login'."),
        ("Where can I park my car at the office?", "Vehicles may be left in the underground garage beneath building B."),
        ("Who should I contact when my laptop breaks?", "Broken computers are handled by the IT helpdesk on extension 4400."),
        ("When is payday?", "Salaries are transferred on the last working day of every month."),
        ("How many vacation days do employees get?", "Staff receive twenty-five days of paid annual leave."),
        ("What is the wifi password for guests?", "Visitors join the wireless network 'lobby' with the code printed at reception."),
        ("How do I request reimbursement for travel expenses?", "Submit receipts for business trips in the finance portal to be paid back."),
        ("The database is running out of disk space", "When PostgreSQL storage fills up, archive old partitions and grow the volume."),
        ("Can I bring my dog to work?", "Pets are welcome in the office on Fridays if they are house-trained."),
        ("What should I do if there is a fire?", "In an emergency blaze, leave by the stairwell and gather at the north lawn."),
        ("How do I get a new monitor?", "Extra screens can be ordered through the equipment catalogue."),
        ("Is there a gym nearby?", "Employees get a discounted membership at the fitness centre across the street."),
        ("Where do I find the company holidays calendar?", "Public days off for this year are listed on the intranet page 'Closures'."),
        ("How do I roll back a bad deployment?", "To undo a faulty release, redeploy the previous tagged build from the pipeline."),
        ("The website is very slow today", "If page loads lag, check the CDN cache hit ratio and the origin's CPU."),
        ("Who approves my time off?", "Leave requests are signed off by your direct manager."),
        ("How do I book a meeting room?", "Conference spaces are reserved through the calendar's resource finder."),
        ("What is the dress code?", "Attire at the office is casual; wear business clothes for client visits."),
        ("I forgot my badge at home", "Staff without an access card can get a temporary pass from security."),
        ("How do I report a security vulnerability?", "Send details of exploitable flaws to the product security team's private mailbox."),
        ("Can I work from home?", "Remote work is allowed up to three days per week."),
        ("Where is the nearest pharmacy?", "A chemist's shop selling medicine is two blocks east of the main entrance."),
        ("How do I rotate the API keys?", "Secrets for service access are renewed in the vault every ninety days."),
        ("My email is not syncing on my phone", "If mail doesn't arrive on a mobile device, re-add the account in the settings app."),
        ("What time does the cafeteria open?", "Breakfast is served in the canteen from 7:30."),
        ("How do I onboard a new hire?", "For a newcomer's first week, order equipment, create accounts and assign a buddy."),
        ("Who do I call when the printer jams?", "Paper stuck in the copier? Facilities fixes it; ring 2200."),
        ("How much can I spend on a client dinner?", "Business meals with customers are capped at 80 euros per person."),
        ("The build fails with out of memory", "When compilation exhausts RAM, raise the CI runner's heap limit."),
        ("How do I get access to the production servers?", "Permission for live machines is granted after an on-call training."),
        ("Is there parental leave?", "New mothers and fathers receive sixteen weeks of paid family time."),
        ("How do I change my bank details for salary?", "Update the account your wages go to in the HR self-service portal."),
        ("Our customers complain about checkout errors", "Shoppers failing to pay usually hit the card processor's timeout."),
        ("How do I install the VPN?", "The secure tunnel client is downloaded from the software centre."),
        ("Where should I store design documents?", "Architecture write-ups belong in the shared wiki space 'Engineering'."),
        ("How do I cancel a purchase order?", "To withdraw a procurement request, contact the buying department before it ships."),
        ("What happens if I am sick?", "When ill, notify your lead before 9 and submit a doctor's note after three days."),
        ("How do I translate the app into German?", "Localisation strings for new languages live in the resources folder."),
        ("Who cleans the kitchen?", "A janitorial service tidies the pantry every evening."),
        ("How do I back up my files?", "Copies of your documents are saved nightly to the cloud drive."),
        ("Can I get a standing desk?", "Height-adjustable workstations are available on request from facilities."),
        ("What is the process for a code review?", "Every pull request needs approval from two teammates before merging."),
    ];

    /// <summary>400 distinct sentences: eight templates, each over ten by five fillers, on subjects no query asks about.</summary>
    public static readonly string[] Distractors = Build();

    private static string[] Build()
    {
        (string Template, string[] First, string[] Second)[] templates =
        [
            ("The {0} orchestra performed {1}'s symphony to a full concert hall.",
                ["Vienna", "Berlin", "Boston", "Chicago", "Prague", "Leipzig", "Oslo", "Madrid", "Lisbon", "Dublin"],
                ["Mahler", "Brahms", "Sibelius", "Dvorak", "Bruckner"]),
            ("Astronomers observed {0} passing close to {1} this season.",
                ["comet Halley", "comet Encke", "asteroid Vesta", "asteroid Ceres", "comet Tempel", "asteroid Pallas", "comet Swift", "asteroid Juno", "comet Borrelly", "asteroid Eros"],
                ["Jupiter", "Saturn", "Mars", "Venus", "Neptune"]),
            ("The {0} football club won {1} matches in a row during the league season.",
                ["Riverside", "Northgate", "Harbour", "Old Town", "Valley", "Hillcrest", "Lakeside", "Eastfield", "Westbrook", "Kingsway"],
                ["four", "six", "nine", "eleven", "fifteen"]),
            ("{0} painted landscapes of {1} in oil during the nineteenth century.",
                ["Turner", "Constable", "Corot", "Friedrich", "Church", "Cole", "Bierstadt", "Courbet", "Millet", "Daubigny"],
                ["the Alps", "Normandy", "the Rhine valley", "the Hudson river", "the Scottish highlands"]),
            ("The river {0} carved a deep canyon through {1} rock over millions of years.",
                ["Colorado", "Tara", "Verdon", "Yarlung", "Fish", "Cotahuasi", "Snake", "Blyde", "Kali", "Tarn"],
                ["sandstone", "limestone", "granite", "basalt", "shale"]),
            ("The novel about {0} was adapted into a {1}.",
                ["a lighthouse keeper", "a travelling circus", "a mountain village", "a whaling ship", "a lost orchard", "two rival chess masters", "a silent monastery", "a desert caravan", "an old clockmaker", "a river pilot"],
                ["film", "opera", "radio play", "stage musical", "graphic novel"]),
            ("The {0} tree grows best in {1} soil.",
                ["oak", "birch", "maple", "willow", "chestnut", "walnut", "cedar", "juniper", "linden", "hawthorn"],
                ["sandy", "clay", "loamy", "chalky", "peaty"]),
            ("In {0} the ancient city of {1} was rebuilt after an earthquake.",
                ["1693", "1755", "1783", "1812", "1857", "1883", "1908", "1923", "1931", "1963"],
                ["Noto", "Antioch", "Sardis", "Pompeii", "Corinth"]),
        ];

        return templates.SelectMany(t => t.First.SelectMany(a => t.Second.Select(b => string.Format(t.Template, a, b)))).ToArray();
    }
}
