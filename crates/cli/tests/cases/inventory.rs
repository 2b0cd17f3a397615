//! Hardware token seeds end to end: `tessera token import` (Azure MFA CSV,
//! plain CSV, RFC 6030 PSKC with a PBKDF2 passphrase), the inventory, assign
//! and unassign, and logins with the imported seeds.

use super::support::TestNode;

/// RFC 4226 Appendix D, 8 digits (the RFC 6030 examples use its secret).
const RFC4226_8DIGIT: [&str; 3] = ["84755224", "94287082", "37359152"];

fn fixture(name: &str) -> String {
    format!("{}/../import/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn pskc_import_assign_login_unassign_keeps_the_counter() {
    let n = TestNode::new();
    n.ok(&["init"]);
    let pass = n.cwd().join("pskc.pass");
    std::fs::write(&pass, "qwerty\n").unwrap();
    let wrong = n.cwd().join("wrong.pass");
    std::fs::write(&wrong, "Qwerty\n").unwrap();
    let f7 = fixture("rfc6030-figure7.xml");
    // a wrong passphrase is refused, nothing imported
    let out =
        n.fail(&["token", "import", &f7, "--format", "pskc", "--passphrase-file", wrong.to_str().unwrap()], &[], 2);
    assert!(!out.contains("imported"), "{out}");
    let out = n.ok(&["token", "import", &f7, "--format", "pskc", "--passphrase-file", pass.to_str().unwrap()]);
    assert!(out.contains("imported 1 tokens"), "{out}");
    let inv = n.ok(&["token", "inventory", "--unassigned"]);
    assert!(inv.contains("987654321") && inv.contains("TokenVendorAcme"), "{inv}");
    // the same file again: the serial exists, nothing changes
    n.fail(&["token", "import", &f7, "--format", "pskc", "--passphrase-file", pass.to_str().unwrap()], &[], 1);

    n.ok(&["user", "add", "hw"]);
    n.ok(&["token", "assign", "987654321", "hw"]);
    assert!(n.ok(&["token", "inventory", "--assigned"]).contains("hw"));
    assert!(n.ok(&["check", "hw", RFC4226_8DIGIT[0]]).starts_with("accept"));
    // give it back and lend it again: the used code stays used
    n.ok(&["token", "unassign", "987654321"]);
    assert!(n.ok(&["token", "inventory", "--unassigned"]).contains("987654321"));
    n.fail(&["check", "hw", RFC4226_8DIGIT[1]], &[], 1);
    n.ok(&["user", "add", "hw2"]);
    n.ok(&["token", "assign", "987654321", "hw2"]);
    n.fail(&["check", "hw2", RFC4226_8DIGIT[0]], &[], 1);
    assert!(n.ok(&["check", "hw2", RFC4226_8DIGIT[1]]).starts_with("accept"));
    // assigning twice is refused
    n.fail(&["token", "assign", "987654321", "hw"], &[], 1);
}

#[test]
fn azure_csv_creates_and_assigns_users_and_reports_bad_rows() {
    let n = TestNode::new();
    n.ok(&["init"]);
    let good = n.cwd().join("azure.csv");
    std::fs::write(
        &good,
        "upn,serial number,secret key,time interval,manufacturer,model\n\
         helga@contoso.com,1234567,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,30,Contoso,HardwareKey\n\
         ivan@contoso.com,1234568,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,60,Contoso,HardwareKey\n",
    )
    .unwrap();
    let bad = n.cwd().join("azure-bad.csv");
    std::fs::write(
        &bad,
        "upn,serial number,secret key,time interval,manufacturer,model\n\
         a@contoso.com,2000001,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,30,Contoso,HardwareKey\n\
         b@contoso.com,2000002,not-base32!!,30,Contoso,HardwareKey\n\
         c@contoso.com,2000001,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,30,Contoso,HardwareKey\n",
    )
    .unwrap();
    // bad rows: reported per row, nothing imported by default
    let out = n.fail(&["token", "import", bad.to_str().unwrap(), "--format", "azure"], &[], 1);
    assert!(out.contains("row 3") && out.contains("row 4") && out.contains("nothing imported"), "{out}");
    assert!(!out.contains("not-base32"), "the secret is not echoed: {out}");
    assert!(!n.ok(&["token", "inventory"]).contains("2000001"));
    assert!(out.contains("row 3 (serial 2000002): error: secret is not valid base32"), "{out}");
    assert!(
        out.contains("2 bad rows: nothing imported (fix them, or add --skip-bad to import the 1 good row)"),
        "{out}"
    );
    // A plain CSV whose only secret is too short once decoded: the row, the
    // serial, how it was read, how to choose; no "import the 0 good ones".
    let short = n.cwd().join("short.csv");
    std::fs::write(&short, "1,zz-not-valid\n").unwrap();
    let out = n.fail(&["token", "import", short.to_str().unwrap(), "--format", "csv"], &[], 1);
    assert!(out.contains("(serial 1): error: secret read as base32 is 6 bytes; a secret is 10 to 128 bytes"), "{out}");
    assert!(out.contains("write hex: or base32:"), "{out}");
    assert!(out.contains("1 bad row, no good one: nothing imported"), "{out}");
    assert!(!out.contains("zz-not-valid"), "the secret is not echoed: {out}");
    // --skip-bad imports the good row
    let out = n.ok(&["token", "import", bad.to_str().unwrap(), "--format", "azure", "--skip-bad"]);
    assert!(out.contains("imported 1 tokens"), "{out}");
    // a header without a required column is a file error
    let nocol = n.cwd().join("azure-nocol.csv");
    std::fs::write(&nocol, "upn,serial number,time interval\nx@y,1,30\n").unwrap();
    n.fail(&["token", "import", nocol.to_str().unwrap(), "--format", "azure"], &[], 2);
    // dry run changes nothing
    let out = n.ok(&["token", "import", good.to_str().unwrap(), "--format", "azure", "--dry-run"]);
    assert!(out.contains("dry run: 2 tokens"), "{out}");
    n.fail(&["user", "show", "helga@contoso.com"], &[], 1);
    let out = n.ok(&["token", "import", good.to_str().unwrap(), "--format", "azure"]);
    assert!(out.contains("assigned 2 (created 2 users)"), "{out}");
    let code = super::support::totp_now("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", 0);
    assert!(n.ok(&["check", "helga@contoso.com", &code]).starts_with("accept"));
    let inv = n.ok(&["token", "inventory", "--assigned", "--json"]);
    assert!(inv.contains("helga@contoso.com") && inv.contains("ivan@contoso.com"), "{inv}");
}

#[test]
fn plain_csv_goes_to_the_inventory() {
    let n = TestNode::new();
    n.ok(&["init"]);
    let f = n.cwd().join("seeds.csv");
    std::fs::write(
        &f,
        "serial,secret,type,algorithm,digits,period_or_counter\n\
         P-1,hex:3132333435363738393031323334353637383930,hotp,SHA1,6,0\n\
         P-2,base32:JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,totp,SHA256,8,60\n",
    )
    .unwrap();
    let out = n.ok(&["token", "import", f.to_str().unwrap(), "--format", "csv"]);
    assert!(out.contains("imported 2 tokens"), "{out}");
    let inv = n.ok(&["token", "inventory", "--unassigned"]);
    assert!(inv.contains("P-1") && inv.contains("hotp") && inv.contains("totp/60s"), "{inv}");
    n.ok(&["user", "add", "pat"]);
    n.ok(&["token", "assign", "P-1", "pat"]);
    assert!(n.ok(&["check", "pat", "755224"]).starts_with("accept"));
}
