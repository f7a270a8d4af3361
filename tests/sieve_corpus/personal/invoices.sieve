require ["fileinto", "variables", "include"];
global "folder";
if header :contains "subject" "Invoice" {
  fileinto "${folder}";
  return;
}
fileinto "NotInvoice";
