require ["fileinto", "variables"];
set "mine" "inner";
fileinto "Mine-${mine}";
