require ["imap4flags", "include", "variables"];
global "marks";
addflag "\\Seen";
set "marks" "${marks}x";
